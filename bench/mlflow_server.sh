# Sourced by the scripts that need a local MLflow tracking server (bench/,
# docs/screenshots/): `start_mlflow_server DIR PORT` starts `mlflow server`
# (SQLite backend and artifact proxy under DIR) in the background of the
# calling script, waits until it answers, and exports MLFLOW_TRACKING_URI.
# The caller's EXIT trap stops it (`kill $(jobs -p)`).
start_mlflow_server() {
  local dir=$1 port=$2
  python3 tests/support/mlflow_guard.py mlflow server \
    --backend-store-uri "sqlite:///$dir/mlflow.db" --artifacts-destination "$dir/artifacts" \
    --host 127.0.0.1 --port "$port" > "$dir/server.log" 2>&1 &
  for _ in $(seq 240); do
    if curl -sf "http://127.0.0.1:$port/health" > /dev/null; then
      export MLFLOW_TRACKING_URI=http://127.0.0.1:$port
      return 0
    fi
    sleep 0.5
  done
  echo "mlflow server did not answer on port $port within 120 s; its log: $dir/server.log" >&2
  tail -20 "$dir/server.log" >&2
  return 1
}
