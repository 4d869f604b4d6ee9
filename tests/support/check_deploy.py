"""Checks the invariants of the deployment files in deploy/ that a schema
cannot: the Indexed Job's completions equal its --shards, the runs volume is
mounted where W2C_RUNS_DIR points, credentials only come from a Secret (or,
in the compose file, from the environment), MLflow runs on PostgreSQL with
an S3 artifact store and lets the w2c service in by its name; every volume
claim is provided, shared ones ReadWriteMany or ReadOnlyMany; pods run as
non-root without privilege escalation; the model-server sidecar has
resources and a model cache; failure policies do not retry what cannot
succeed and do not count evictions; the pod's grace period outlasts w2c's
stop timeout (argv[3], seconds); the documented waits end when the shards
Job fails too; the image runs as non-root, builds its dependencies in a
layer of their own and its context holds only what the build reads.
Prints one problem per line; exits 1 if any, and writes each embedded
eval.toml, and the finalize Job's shell command (finalize-job.sh), to the
directory given as argv[2]."""
import fnmatch
import glob
import os
import re
import shlex
import sys

import yaml

root, out_dir, stop_timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
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
mlflow_hosts = re.search(r'--allowed-hosts "([^"]*)"', mlflow_cmd)
allowed = mlflow_hosts.group(1).split(",") if mlflow_hosts else []
w2c_host = services["w2c"]["environment"]["MLFLOW_TRACKING_URI"].split("//", 1)[1]
if not any(fnmatch.fnmatch(w2c_host, a) if "*" in a else w2c_host == a for a in allowed):
    problems.append(
        f"compose.yaml: MLflow refuses the Host {w2c_host} the w2c service sends "
        "(--allowed-hosts must name it: MLflow >= 3.5 allows only localhost and private IPs)"
    )
if "--host 0.0.0.0" not in mlflow_cmd:
    problems.append("compose.yaml: MLflow listens on 127.0.0.1 only")


# --- Kubernetes: volumes, security, sidecar, failure policies, grace ---
k8s = {}
for path in sorted(glob.glob(os.path.join(root, "deploy/kubernetes/*.yaml"))):
    for d in docs(os.path.relpath(path, root)):
        k8s.setdefault(d["kind"], []).append((os.path.basename(path), d))
claims = {d["metadata"]["name"]: d for _, d in k8s.get("PersistentVolumeClaim", [])}
SHARED = {"ReadWriteMany", "ReadOnlyMany"}


def pod_specs():
    for kind in ("Job", "Pod"):
        for name, d in k8s.get(kind, []):
            yield name, d, (d["spec"]["template"]["spec"] if kind == "Job" else d["spec"])


for name, d, pod in pod_specs():
    indexed = d["kind"] == "Job" and d["spec"].get("completionMode") == "Indexed"
    for v in pod.get("volumes", []):
        claim = v.get("persistentVolumeClaim", {}).get("claimName")
        if claim is None:
            continue
        if claim not in claims:
            problems.append(f"{name}: volume claim {claim} is used but no manifest provides it")
        elif indexed and not SHARED & set(claims[claim]["spec"]["accessModes"]):
            problems.append(
                f"{name}: {claim} is mounted by every pod at once but is not ReadWriteMany or ReadOnlyMany"
            )
    sc = pod.get("securityContext", {})
    if sc.get("runAsNonRoot") is not True or not sc.get("runAsUser"):
        problems.append(f"{name}: the pod does not run as a non-root user (securityContext)")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        csc = c.get("securityContext", {})
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: {c['name']} allows privilege escalation")
        if "ALL" not in csc.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}: {c['name']} keeps its capabilities")
        if c.get("image", "").endswith("/w2c:latest") and csc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: {c['name']} (w2c) has a writable root filesystem")
        if not c.get("resources", {}).get("limits", {}).get("memory"):
            problems.append(f"{name}: {c['name']} has no memory limit")

(shards_name, shards), = [(n, d) for n, d in k8s["Job"] if d["metadata"]["name"] == "w2c-shards"]
pod = shards["spec"]["template"]["spec"]
sidecars = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
if not sidecars:
    problems.append(f"{shards_name}: no model-server sidecar")
pvc_mounts = {
    v["name"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v
}
for c in sidecars:
    req = c.get("resources", {}).get("requests", {})
    if not (req.get("cpu") and req.get("memory")):
        problems.append(f"{shards_name}: the {c['name']} sidecar requests no CPU or memory")
    cache = [
        m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in pvc_mounts
    ]
    hf_home = {e["name"]: e.get("value", "") for e in c.get("env", [])}.get("HF_HOME", "")
    if not cache or not any(hf_home.startswith(m) for m in cache):
        problems.append(
            f"{shards_name}: the {c['name']} sidecar has no model cache on a volume (HF_HOME on a claim)"
        )


def rules(job):
    return job["spec"].get("podFailurePolicy", {}).get("rules", [])


def exit_rule(job, code):
    for r in rules(job):
        on = r.get("onExitCodes")
        if on and on.get("containerName") == "w2c" and on["operator"] == "In" and code in on["values"]:
            return r["action"]
    return None


def ignores_disruptions(job):
    return any(
        r["action"] == "Ignore"
        and any(c["type"] == "DisruptionTarget" for c in r.get("onPodConditions", []))
        for r in rules(job)
    )


if exit_rule(shards, 1) not in ("FailIndex", "FailJob"):
    problems.append(f"{shards_name}: a config error (exit 1) is retried, loading the model each time")
if exit_rule(shards, 3) in ("FailIndex", "FailJob"):
    problems.append(f"{shards_name}: items that failed (exit 3) are not retried")
if not ignores_disruptions(shards):
    problems.append(f"{shards_name}: evictions count against backoffLimitPerIndex")
grace = pod.get("terminationGracePeriodSeconds", 30)
if grace <= stop_timeout:
    problems.append(
        f"{shards_name}: terminationGracePeriodSeconds {grace} does not outlast w2c's stop timeout ({stop_timeout} s)"
    )
(fin_name, fin), = [(n, d) for n, d in k8s["Job"] if d["metadata"]["name"] == "w2c-finalize"]
if fin["spec"].get("backoffLimit", 6) > 0 and exit_rule(fin, 3) != "FailJob":
    problems.append(f"{fin_name}: exit 3 (a shard lacks items) is retried for nothing")
if not ignores_disruptions(fin):
    problems.append(f"{fin_name}: evictions count against backoffLimit")

# The documented ways to wait for the shards Job end when it fails too.
for rel in ("docs/cluster.md", "deploy/kubernetes/README.md", "deploy/kubernetes/shards-job.yaml"):
    with open(os.path.join(root, rel)) as f:
        for n, line in enumerate(f, 1):
            if "kubectl" in line and "w2c-shards" in line and ("wait" in line or "until" in line):
                if "condition=complete" in line or not ("Complete" in line and "Failed" in line):
                    problems.append(
                        f"{rel}:{n}: waits for the shards Job to complete only (it blocks if an index fails for good)"
                    )


# --- The image ---
def stages(path):
    out = []
    with open(os.path.join(root, path)) as f:
        text = f.read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            out.append([])
        out[-1].append((word.upper(), rest.strip()))
    return out


build, final = stages("deploy/Dockerfile")[0], stages("deploy/Dockerfile")[-1]
users = [rest for word, rest in final if word == "USER"]
if not users or users[-1].split(":")[0] in ("0", "root") or not users[-1].split(":")[0].isdigit():
    problems.append("deploy/Dockerfile: the image does not run as a numeric non-root USER")
copies = [(i, rest.split()) for i, (word, rest) in enumerate(build) if word == "COPY"]
builds = [i for i, (word, rest) in enumerate(build) if word == "RUN" and "cargo build" in rest]
if any(args[0] == "." for _, args in copies):
    problems.append("deploy/Dockerfile: `COPY . .` sends everything and rebuilds the dependencies on any change")
manifest = [i for i, args in copies if set(args[:-1]) == {"Cargo.toml", "Cargo.lock"}]
sources = [i for i, args in copies if args[0] == "src"]
if not (manifest and sources and any(manifest[0] < b < sources[0] for b in builds)):
    problems.append(
        "deploy/Dockerfile: no dependency layer (Cargo.toml and Cargo.lock copied and built before the sources)"
    )
elif not any(b > sources[0] and "touch" in build[b][1] for b in builds):
    # COPY keeps the files' times, older than the empty crate's build:
    # without a touch cargo keeps the empty binary.
    problems.append(
        "deploy/Dockerfile: the sources are not touched before the last build (cargo keeps the dependency layer's empty crate)"
    )


def ignored(path, patterns):
    out = False
    parts = path.split("/")
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.rstrip("/")
        if any(fnmatch.fnmatch("/".join(parts[: k + 1]), pat) for k in range(len(parts))):
            out = not neg
    return out


ignore_file = os.path.join(root, ".dockerignore")
if not os.path.exists(ignore_file):
    problems.append(".dockerignore: missing (`COPY` sends target/, runs/ and .git to the builder)")
else:
    with open(ignore_file) as f:
        patterns = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    for p in ("target/release/w2c", "runs/k/x.json", ".git/HEAD"):
        if not ignored(p, patterns):
            problems.append(f".dockerignore: {p} is in the build context")
    copied = [a.rstrip("/") for _, args in copies for a in args[:-1]]
    needed = ["Cargo.toml", "Cargo.lock", "src/main.rs"]
    for rs in glob.glob(os.path.join(root, "src/**/*.rs"), recursive=True):
        with open(rs) as f:
            for inc in re.findall(r'include_(?:str|bytes)!\("([^"]+)"\)', f.read()):
                needed.append(os.path.relpath(os.path.normpath(os.path.join(os.path.dirname(rs), inc)), root))
    for p in needed:
        if ignored(p, patterns):
            problems.append(f".dockerignore: {p}, which the build reads, is left out of the context")
        if not any(p == c or p.startswith(c + "/") for c in copied):
            problems.append(f"deploy/Dockerfile: {p}, which the build reads, is not copied")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
