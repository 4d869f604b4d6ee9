# MLflow with the clients of its PostgreSQL backend (psycopg2) and its
# S3-compatible artifact store (boto3).
FROM python:3.11-slim
RUN pip install --no-cache-dir mlflow==3.17.2 psycopg2-binary boto3
