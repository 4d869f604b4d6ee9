"""Checks the invariants of the deployment files in deploy/ that a schema
cannot: the Indexed Job's completions equal its --shards, the runs volume is
mounted where W2C_RUNS_DIR points, credentials only come from a Secret (or,
in the compose file, from the environment), MLflow runs on PostgreSQL with
an S3 artifact store. Prints one problem per line; exits 1 if any, and
writes each embedded eval.toml, and the finalize Job's shell command
(finalize-job.sh), to the directory given as argv[2]."""
import os
import re
import sys

import yaml

root, out_dir = sys.argv[1], sys.argv[2]
problems = []
SECRETISH = re.compile(r"(PASSWORD|TOKEN|SECRET|API_KEY|ACCESS_KEY)", re.I)


def docs(path):
    with open(os.path.join(root, path)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_job(path, want_shards):
    (job,) = docs(path)
    spec = job["spec"]
    pod = spec["template"]["spec"]
    (w2c,) = [c for c in pod["containers"] if c["name"] == "w2c"]
    env = env_of(w2c)
    runs = env.get("W2C_RUNS_DIR", {}).get("value")
    mounts = {m["mountPath"]: m["name"] for m in w2c.get("volumeMounts", [])}
    claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
        for v in pod.get("volumes", [])
    }
    if claims.get(mounts.get(runs)) != "w2c-runs":
        problems.append(f"{path}: W2C_RUNS_DIR={runs} is not the w2c-runs volume's mount")
    for name, e in env.items():
        if name.startswith("MLFLOW_") and "secretKeyRef" not in e.get("valueFrom", {}):
            problems.append(f"{path}: {name} does not come from a Secret")
        if SECRETISH.search(name) and "value" in e:
            problems.append(f"{path}: {name} has a literal value")
    if want_shards:
        args = w2c["args"]
        shards = int(args[args.index("--shards") + 1])
        if spec.get("completionMode") != "Indexed":
            problems.append(f"{path}: not an Indexed Job")
        if spec["completions"] != shards or spec["parallelism"] != shards:
            problems.append(
                f"{path}: completions {spec['completions']} / parallelism "
                f"{spec['parallelism']} differ from --shards {shards}"
            )
    return pod


check_job("deploy/kubernetes/shards-job.yaml", True)
pod = check_job("deploy/kubernetes/finalize-job.yaml", False)
if "w2c finalize" not in " ".join(pod["containers"][0]["args"]):
    problems.append("finalize-job.yaml: does not run `w2c finalize`")
with open(os.path.join(out_dir, "finalize-job.sh"), "w") as f:
    f.write(" ".join(pod["containers"][0]["args"]))
(cm,) = docs("deploy/kubernetes/config.yaml")
with open(os.path.join(out_dir, "k8s.toml"), "w") as f:
    f.write(cm["data"]["eval.toml"])

(compose,) = docs("deploy/compose/compose.yaml")
services = compose["services"]
for needed in ("postgres", "s3", "mlflow", "w2c"):
    if needed not in services:
        problems.append(f"compose.yaml: no `{needed}` service")
mlflow_cmd = " ".join(services["mlflow"]["command"])
if "postgresql://" not in mlflow_cmd or "--artifacts-destination s3://" not in mlflow_cmd:
    problems.append("compose.yaml: MLflow is not on PostgreSQL with an s3:// artifact store")
for name, svc in services.items():
    for key, value in (svc.get("environment") or {}).items():
        if SECRETISH.search(key) and not str(value).startswith("${"):
            problems.append(f"compose.yaml: {name}.{key} has a literal value")
if services["w2c"]["environment"].get("MLFLOW_TRACKING_URI") != "http://mlflow:5000":
    problems.append("compose.yaml: w2c does not track in the compose file's MLflow")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
