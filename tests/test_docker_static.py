"""docker/ checked without Docker: the Dockerfile (parsed into instructions here), compose files
and KubeRay manifests parse; every `sweeper ...` command they or docker/README.md show is one the
CLI accepts; image tags, ports, environment names, secrets and volume paths agree across files.
The two ways to share results are checked each: a volume every Ray node mounts, and a bucket
(compose's profile s3, the KubeRay manifests `*-s3.yaml`) that no node mounts, reached with the
standard AWS_* variables whose keys only ever come from a secret.

Each check is a function from the loaded files to a list of problems, so that a test can show
it fails: `test_each_check_catches_its_mutation` breaks one thing per check in a copy of the
files and expects that check, and only a non-empty list, back."""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from sweeper.cli import _parser

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10; tomli is the same parser, published separately
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
SCRIPTS = {"mlflow": "mlflow-server.sh", "ray-head": "ray-head.sh", "ray-worker": "ray-worker.sh"}
SHARED_SCRIPT = "ray-common.sh"  # sourced by both Ray scripts
INTERPOLATION = re.compile(r"(?<!\$)\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
SECRET_KEYS = ("RAY_AUTH_TOKEN", "POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY")
#: What boto3 and pyarrow read to reach a bucket: the two keys come from a secret, the other two
#: are plain configuration.
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
S3_SETTINGS = ("AWS_ENDPOINT_URL_S3", "AWS_REGION")
S3_PROFILE = "s3"
S3_ENV_FILE = "s3.env"
#: The KubeRay manifests of the bucket variant end so; the others are the volume variant.
BUCKET_MANIFESTS = "-s3.yaml"
#: Names an environment variable or ConfigMap key whose value must never be written down.
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|ACCESS_KEY|STORE_URI")
#: A literal credential: an AWS access key id, or a URI with user:password@ in it.
LITERAL_CREDENTIAL = re.compile(r"\bAKIA[0-9A-Z]{16}\b|://[^/\s:@]+:[^/\s@]+@")


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str] | None:
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) else None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their arguments; comments, parser directives and blank lines dropped,
    backslash-newline continuations joined as Docker joins them (no space inserted)."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines inside a continuation too
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1]
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    if pending:
        raise ValueError("Dockerfile ends inside a line continuation")
    return instructions


@dataclass
class Files:
    compose: dict
    compose_gpu: dict
    compose_comments: list[str]
    kuberay: dict[str, list[dict]]
    dockerfile: list[Instruction]
    dockerignore: list[str]
    scripts: dict[str, str]
    readme: str
    examples: dict[str, dict[str, str]]
    gitignore: list[str]
    pyproject: dict
    constraints: dict[str, str]


def load() -> Files:
    compose_text = (DOCKER / "compose.yaml").read_text()
    examples = {}
    for path in sorted(DOCKER.glob("*.env.example")):
        lines = [x for x in path.read_text().splitlines() if x and not x.startswith("#")]
        examples[path.name.removesuffix(".example")] = dict(x.split("=", 1) for x in lines)
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return Files(
        compose=yaml.safe_load(compose_text),
        compose_gpu=yaml.safe_load((DOCKER / "compose.gpu.yaml").read_text()),
        compose_comments=[m.group(1) for m in re.finditer(r"^#\s?(.*)$", compose_text, re.M)],
        kuberay={p.name: list(yaml.safe_load_all(p.read_text()))
                 for p in sorted((DOCKER / "kuberay").glob("*.yaml"))},
        dockerfile=parse_dockerfile((DOCKER / "Dockerfile").read_text()),
        dockerignore=[x.strip() for x in (DOCKER / "Dockerfile.dockerignore").read_text()
                      .splitlines() if x.strip() and not x.startswith("#")],
        scripts={p.name: p.read_text() for p in sorted(DOCKER.glob("*.sh"))},
        readme=(DOCKER / "README.md").read_text(),
        examples=examples,
        gitignore=[x.strip() for x in (ROOT / ".gitignore").read_text().splitlines()
                   if x.strip() and not x.startswith("#")],
        pyproject=tomllib.loads((ROOT / "pyproject.toml").read_text()),
        constraints=pins)


# -- small readers -------------------------------------------------------------------------

def resolve(value: str) -> str:
    """A compose value with every `${VAR:-default}` at its default (what a bare `up` uses)."""
    return INTERPOLATION.sub(lambda m: m.group(3) or "", str(value))


def service_env(f: Files, service: str) -> dict[str, str]:
    return {k: resolve(v) for k, v in f.compose["services"][service].get("environment",
                                                                         {}).items()}


def our_services(f: Files) -> list[str]:
    return [name for name, s in f.compose["services"].items() if "build" in s]


def env_files(service: dict) -> list[tuple[str, bool]]:
    """(file, required) of each env_file of a compose service, short or long syntax."""
    entries = service.get("env_file", [])
    found = []
    for entry in [entries] if isinstance(entries, (str, dict)) else entries:
        if isinstance(entry, str):
            found.append((entry, True))
        else:
            found.append((entry["path"], entry.get("required", True)))
    return found


def profiled(f: Files, profile: str | None) -> list[str]:
    """The compose services of a profile; None: those of none, which a bare `up` starts."""
    def member(service: dict) -> bool:
        profiles = service.get("profiles", [])
        return profile in profiles if profile else not profiles
    return [name for name, s in f.compose["services"].items() if member(s)]


def networks_of(service: dict) -> set[str]:
    """The compose networks a service joins (list or mapping; `default` when none is named)."""
    return set(service.get("networks") or ["default"])


def dockerfile_args(f: Files) -> dict[str, str]:
    """Build arguments at their defaults, `${OTHER}` in a default resolved as Docker does."""
    args: dict[str, str] = {}
    for ins in f.dockerfile:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, default = ins.args.split("=", 1)
            args[name] = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), default)
    return args


def workdir(f: Files) -> str:
    return [ins.args for ins in f.dockerfile if ins.keyword == "WORKDIR"][-1]


def image_path_to_repo(f: Files, path: str) -> Path | None:
    """The repository file that the image has at `path` (through WORKDIR and COPY), if any."""
    base = workdir(f).rstrip("/") + "/"
    if not path.startswith(base):
        return None
    relative = path[len(base):]
    for ins in f.dockerfile:
        if ins.keyword != "COPY" or ins.args.startswith("--from"):
            continue
        *sources, dest = ins.args.split()
        dest = dest.rstrip("/").removeprefix("./").removeprefix(".")
        for source in sources:
            for match in sorted(ROOT.glob(source)):
                name = match.relative_to(ROOT).as_posix()
                # `COPY docker/*.sh docker/` puts each file in docker/; `COPY sweeper sweeper`
                # copies the directory's content to sweeper/.
                if len(sources) > 1 or "*" in source:
                    target = f"{dest}/{match.name}" if dest else match.name
                else:
                    target = dest or name
                if match.is_dir() and relative.startswith(target + "/"):
                    return match / relative[len(target) + 1:]
                if relative == target:
                    return match
    return None


def script_text(f: Files, name: str) -> str:
    text = f.scripts[name]
    if f"source \"$(dirname \"${{BASH_SOURCE[0]}}\")/{SHARED_SCRIPT}\"" in text:
        text += f.scripts[SHARED_SCRIPT]
    return text


def script_reads(text: str) -> set[str]:
    """Variables a script expands (not its arrays, not its positional arguments)."""
    return set(re.findall(r"\$\{([A-Za-z_]\w*)(?![\w\[])", text))


def script_requires(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+):\?", text))


def command_lines(f: Files) -> list[tuple[str, list[str]]]:
    """(where, argv) of every shell command shown: README code blocks, compose.yaml's header
    comments, the KubeRay entrypoint; continuation lines joined, argv split by shlex."""
    sources: list[tuple[str, str]] = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", f.readme, re.S):
        sources.append(("docker/README.md", block))
    header = "\n".join(line for line in f.compose_comments
                       if re.match(r"\s+(docker|sweeper|\.venv/bin/sweeper|--)", line)
                       or line.rstrip().endswith("\\"))
    sources.append(("docker/compose.yaml comments", header))
    for name, docs in f.kuberay.items():
        for doc in docs:
            if doc.get("kind") == "RayJob":
                sources.append((f"docker/kuberay/{name}", doc["spec"]["entrypoint"]))
    found = []
    for where, text in sources:
        for line in text.replace("\\\n", " ").splitlines():
            if line.strip():
                found.append((where, shlex.split(line, comments=True)))
    return found


def sweeper_commands(f: Files) -> list[tuple[str, list[str]]]:
    """The argv after `sweeper` of every command line that runs it."""
    commands = []
    for where, argv in command_lines(f):
        for i, token in enumerate(argv):
            if token == "sweeper" or token.endswith("/bin/sweeper"):
                rest = argv[i + 1:]
                stop = next((j for j, t in enumerate(rest) if t in ("&&", "||", "|", ";")),
                            len(rest))
                commands.append((where, rest[:stop]))
                break
    return commands


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def k8s_containers(f: Files) -> list[tuple[str, dict, dict]]:
    """(role, pod spec, container) of every container the KubeRay manifests run."""
    found = []
    for docs in f.kuberay.values():
        for doc in docs:
            spec = doc.get("spec", {})
            templates = []
            if doc.get("kind") == "RayCluster":
                templates.append(("head", spec["headGroupSpec"]["template"]))
                templates += [(f"worker:{g['groupName']}", g["template"])
                              for g in spec.get("workerGroupSpecs", [])]
            if doc.get("kind") == "RayJob" and "submitterPodTemplate" in spec:
                templates.append(("submitter", spec["submitterPodTemplate"]))
            for role, template in templates:
                for container in template["spec"]["containers"]:
                    found.append((role, template["spec"], container))
    return found


def k8s_kind(f: Files, kind: str) -> list[dict]:
    return [d for docs in f.kuberay.values() for d in docs if d.get("kind") == kind]


def k8s_doc(f: Files, file: str, kind: str) -> dict:
    """The one document of a kind in one manifest file."""
    return next(d for d in f.kuberay[file] if d.get("kind") == kind)


def variant(f: Files, bucket: bool) -> Files:
    """The files with only one variant's KubeRay manifests: the bucket's (`*-s3.yaml`) or the
    volume's (the others)."""
    return replace(f, kuberay={name: docs for name, docs in f.kuberay.items()
                               if name.endswith(BUCKET_MANIFESTS) == bucket})


def k8s_deployments(f: Files) -> list[tuple[str, dict, dict]]:
    """(deployment name, pod spec, container) of every container of a Deployment."""
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"], container)
            for d in k8s_kind(f, "Deployment")
            for container in d["spec"]["template"]["spec"]["containers"]]


def secret_refs(container: dict, key: str) -> set[str]:
    """The Secrets a container's variable `key` comes from: its env's secretKeyRef, or an
    envFrom secretRef (which may hold it)."""
    entry = next((e for e in container.get("env", []) if e["name"] == key), None)
    if entry is not None:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        return {ref["name"]} if ref else set()
    return {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}


def k8s_value(f: Files, container: dict, key: str) -> str | None:
    """A container's plain (non-secret) variable: a literal, a configMapKeyRef, or a key of a
    ConfigMap it takes whole (envFrom); None when it has none."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in k8s_kind(f, "ConfigMap")}
    for entry in container.get("env", []):
        if entry["name"] == key:
            ref = entry.get("valueFrom", {}).get("configMapKeyRef")
            return maps.get(ref["name"], {}).get(ref["key"]) if ref else entry.get("value")
    for source in container.get("envFrom", []):
        data = maps.get(source.get("configMapRef", {}).get("name"), {})
        if key in data:
            return data[key]
    return None


def results_path(f: Files) -> str:
    """Where the compose head mounts the `results` volume: the path every node must share."""
    for mount in f.compose["services"]["ray-head"]["volumes"]:
        if mount.split(":")[0] == "results":
            return mount.split(":")[1]
    return ""


# -- the checks ----------------------------------------------------------------------------

def check_dockerfile(f: Files) -> list[str]:
    problems = []
    keywords = [i.keyword for i in f.dockerfile]
    if not keywords or keywords[0] not in ("FROM", "ARG") or "FROM" not in keywords:
        problems.append("the Dockerfile must start with FROM (or ARGs before it)")
    args = dockerfile_args(f)
    if args.get("TORCH_VARIANT") != "cpu":
        problems.append(f"build arg TORCH_VARIANT must default to cpu, got "
                        f"{args.get('TORCH_VARIANT')!r}")
    runs = " ".join(i.args for i in f.dockerfile if i.keyword == "RUN")
    if "-c constraints.txt" not in runs:
        problems.append("no RUN installs with -c constraints.txt")
    users = [i.args for i in f.dockerfile if i.keyword == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"the image must end as a non-root USER, got {users}")
    elif not re.search(rf"useradd\b[^&]*\b{re.escape(users[-1])}\b", runs):
        problems.append(f"USER {users[-1]} is never created with useradd")
    for ins in f.dockerfile:
        if ins.keyword != "COPY" or ins.args.startswith("--from"):
            continue
        for source in ins.args.split()[:-1]:
            matches = sorted(ROOT.glob(source))
            if not matches:
                problems.append(f"COPY {source}: nothing in the repository matches")
            for match in matches:
                name = match.relative_to(ROOT).as_posix()
                if dockerignored(f, name):
                    problems.append(f"COPY {source}: {name} is excluded by the .dockerignore")
    if not any("search_spaces" in i.args for i in f.dockerfile if i.keyword == "COPY"):
        problems.append("the image does not carry search_spaces/")
    for heavy in (".venv", ".git", "results"):
        if not dockerignored(f, heavy):
            problems.append(f"{heavy} is not excluded from the build context")
    return problems


def dockerignored(f: Files, name: str) -> bool:
    ignored = False
    for pattern in f.dockerignore:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name, pattern + "/*") or \
                (name.startswith(pattern + "/") and "*" not in pattern):
            ignored = not negate
    return ignored


def check_dependency_install(f: Files) -> list[str]:
    """Run the Dockerfile's dependency RUN (sh, as Docker does) with a `pip` that only records
    its arguments: torch from the variant's index at the pinned version, then the package's
    dependencies and its postgres and s3 extras under the constraints, the s3 extra's packages
    pinned there."""
    runs = [i for i in f.dockerfile if i.keyword == "RUN" and "--index-url" in i.args]
    if len(runs) != 1:
        return [f"expected one RUN that installs torch with --index-url, found {len(runs)}"]
    args = dockerfile_args(f)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("pyproject.toml", "constraints.txt"):
            shutil.copy(ROOT / name, work / name)
        (work / "bin").mkdir()
        (work / "bin" / "pip").write_text(
            '#!/bin/sh\necho "pip $*" >> "$PIP_LOG"\n'
            'while [ $# -gt 0 ]; do [ "$1" = -r ] && cp "$2" "$PIP_LOG.req"; shift; done\n'
            'exit 0\n')
        (work / "bin" / "pip").chmod(0o755)
        log = work / "pip.log"
        done = subprocess.run(
            ["sh", "-c", runs[0].args], cwd=work, capture_output=True, text=True,
            env={**args, "PATH": f"{work / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin",
                 "PIP_LOG": str(log)})
        if done.returncode != 0:
            return [f"the dependency RUN fails: {done.stderr.strip()[-500:]}"]
        calls = log.read_text().splitlines() if log.exists() else []
        requirements = (work / "pip.log.req").read_text().split() \
            if (work / "pip.log.req").exists() else []
    problems = []
    index = f"https://download.pytorch.org/whl/{args.get('TORCH_VARIANT')}"
    torch = [c for c in calls if f"--index-url {index}" in c and "torch" in c.split()]
    if not torch or "-c constraints.txt" not in torch[0] or calls.index(torch[0]) != 0:
        problems.append(f"torch is not installed first, from {index}, under constraints.txt: "
                        f"pip calls {calls}")
    if not any("-c constraints.txt" in c and "-r" in c.split() for c in calls):
        problems.append(f"the dependencies are not installed under constraints.txt: {calls}")
    project = f.pyproject["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["postgres"], *extras["s3"]]
    if sorted(requirements) != sorted(d.replace(" ", "") for d in wanted):
        problems.append(f"installed requirements {requirements} != dependencies + postgres and "
                        f"s3 extras {wanted}")
    for requirement in extras["s3"]:
        name = re.match(r"[\w.-]+", requirement).group(0).lower()
        if name not in f.constraints:
            problems.append(f"{name} (the s3 extra) is not pinned in constraints.txt")
    return problems


def check_postgres_driver(f: Files) -> list[str]:
    """psycopg2 pinned, in the postgres extra, and in the test extra (tests/test_stack.py)."""
    problems = []
    if "psycopg2-binary" not in f.constraints:
        problems.append("psycopg2-binary is not pinned in constraints.txt")
    extras = f.pyproject["project"]["optional-dependencies"]
    for extra in ("postgres", "test"):
        if not any(d.startswith("psycopg2-binary") for d in extras.get(extra, [])):
            problems.append(f"psycopg2-binary missing from the [{extra}] extra")
    script = f.scripts.get(SCRIPTS["mlflow"], "")
    if "postgresql+psycopg2://" not in script:
        problems.append("mlflow-server.sh must name the psycopg2 driver in the URI it builds "
                        "(SQLAlchemy >= 2.1 maps a bare postgresql:// to psycopg 3)")
    return problems


def check_compose_services(f: Files) -> list[str]:
    problems = []
    services = f.compose.get("services", {})
    for name in ("postgres", "mlflow", "ray-head", "ray-worker"):
        if name not in services:
            problems.append(f"compose has no service {name}")
    for name, service in services.items():
        # A one-shot service (restart: "no", e.g. the s3 profile's bucket creation) exits when
        # done; every other one says when it is ready.
        if "healthcheck" not in service and service.get("restart") != "no":
            problems.append(f"service {name} has no healthcheck")
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            problems.append(f"service {name}: depends_on must give conditions, got a list")
            continue
        for other, how in depends.items():
            if how.get("condition") != "service_healthy":
                problems.append(f"service {name} depends on {other} without "
                                "condition: service_healthy")
            if other not in services or "healthcheck" not in services[other]:
                problems.append(f"service {name} waits for {other}, which has no healthcheck")
    for name in our_services(f):
        build = services[name]["build"]
        dockerfile = (DOCKER / build["context"] / build["dockerfile"]).resolve()
        if dockerfile != DOCKER / "Dockerfile":
            problems.append(f"service {name} builds {dockerfile}, not docker/Dockerfile")
        if resolve(build.get("args", {}).get("TORCH_VARIANT", "")) != "cpu":
            problems.append(f"service {name} does not build the CPU variant by default")
        if not services[name].get("init"):
            problems.append(f"service {name} runs without init (orphans are never reaped)")
    return problems


def check_entrypoints(f: Files) -> list[str]:
    """Each service's command and healthcheck run a docker/ script that the image carries,
    that execs the long-running process in the foreground."""
    problems = []
    services = f.compose["services"]
    foreground = {"mlflow": "exec mlflow server", "ray-head": "exec ray start --head",
                  "ray-worker": "exec ray start --address"}
    for name, script in SCRIPTS.items():
        command = services.get(name, {}).get("command", [])
        in_image = image_path_to_repo(f, command[0]) if command else None
        if in_image != DOCKER / script:
            problems.append(f"service {name} runs {command}, which is not docker/{script} "
                            "in the image")
        text = f.scripts.get(script, "")
        if not text.startswith("#!/usr/bin/env bash") or "set -euo pipefail" not in text:
            problems.append(f"{script} is not a strict bash script")
        if foreground[name] not in text:
            problems.append(f"{script} does not `{foreground[name]}`")
        if not os.access(DOCKER / script, os.X_OK):
            problems.append(f"docker/{script} is not executable")
    for extra in (SHARED_SCRIPT, "healthcheck.sh"):
        if extra not in f.scripts:
            problems.append(f"docker/{extra} is missing")
    if "--block" not in f.scripts.get(SHARED_SCRIPT, ""):
        problems.append("the Ray scripts do not run `ray start --block`")
    cases = set(re.findall(r"^\s+([\w-]+)\)", f.scripts.get("healthcheck.sh", ""), re.M))
    for name in our_services(f):
        test = services[name].get("healthcheck", {}).get("test", [])
        if test[:1] != ["CMD"] or image_path_to_repo(f, test[1]) != DOCKER / "healthcheck.sh" \
                or test[2:] != [name] or name not in cases:
            problems.append(f"service {name}: healthcheck {test} is not "
                            f"docker/healthcheck.sh {name}")
    return problems


def check_environment(f: Files) -> list[str]:
    """Every variable compose sets is one the service's script reads or documents, every
    variable a script requires is set, and the worker finds the head where it listens."""
    problems = []
    for name, script in SCRIPTS.items():
        env = f.compose["services"][name].get("environment", {})
        text = script_text(f, script)
        for key in env:
            if not re.search(rf"\b{key}\b", text):
                problems.append(f"compose sets {key} for {name}, but {script} never uses it")
        provided = set(env) | {k for file, _ in env_files(f.compose["services"][name])
                               for k in f.examples.get(file, {})}
        for key in script_requires(text) - provided:
            problems.append(f"{script} requires {key}, which compose does not set for {name}")
    head, worker = service_env(f, "ray-head"), service_env(f, "ray-worker")
    expected = f"ray-head:{head.get('RAY_GCS_PORT')}"
    if worker.get("RAY_HEAD_ADDRESS") != expected:
        problems.append(f"RAY_HEAD_ADDRESS {worker.get('RAY_HEAD_ADDRESS')!r} != {expected!r}")
    for name in ("ray-head", "ray-worker"):
        if service_env(f, name).get("RAY_AUTH_MODE") != "token":
            problems.append(f"{name}: RAY_AUTH_MODE is not token")
    allowed = service_env(f, "mlflow").get("MLFLOW_SERVER_ALLOWED_HOSTS", "").split(",")
    if not any(fnmatch.fnmatch(f"mlflow:{service_env(f, 'mlflow').get('MLFLOW_PORT')}", a)
               for a in allowed):
        problems.append(f"MLflow refuses the Host header the Ray nodes send (mlflow:PORT): "
                        f"allowed {allowed}")
    return problems


def check_published_ports(f: Files) -> list[str]:
    """Published on 127.0.0.1 by default, onto the port the service's script listens on."""
    problems = []
    listens = {"mlflow": ("MLFLOW_PORT", "5000"), "ray-head": ("RAY_DASHBOARD_PORT", "8265")}
    for name, service in f.compose["services"].items():
        for port in service.get("ports", []):
            parts = resolve(port).split(":")
            if len(parts) != 3 or parts[0] != "127.0.0.1":
                problems.append(f"service {name} publishes {port!r}, not on 127.0.0.1 by default")
                continue
            variable, default = listens.get(name, ("", ""))
            if parts[2] != service_env(f, name).get(variable, default):
                problems.append(f"service {name} publishes container port {parts[2]}, but "
                                f"listens on {variable}={service_env(f, name).get(variable)}")
    if sorted(listens) != sorted(n for n, s in f.compose["services"].items() if "ports" in s):
        problems.append("exactly mlflow and ray-head should publish ports")
    return problems


def check_secrets(f: Files) -> list[str]:
    """Secrets come from env files with a committed example and a git-ignored real copy."""
    problems = []
    tracked = subprocess.run(["git", "ls-files", "docker"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    for name, service in f.compose["services"].items():
        for key in service.get("environment", {}):
            if key in SECRET_KEYS or SECRET_NAME.search(key):
                problems.append(f"service {name} sets the secret {key} inline")
        for file, _ in env_files(service):
            path = f"docker/{file}"
            if file not in f.examples:
                problems.append(f"service {name} reads {file}, but docker/{file}.example "
                                "does not exist")
            if not any(fnmatch.fnmatch(path, p.removeprefix("/")) for p in f.gitignore):
                problems.append(f"{path} is not git-ignored")
            if path in tracked:
                problems.append(f"{path} is committed")
    for file, values in f.examples.items():
        for key in SECRET_KEYS:
            if values.get(key):
                problems.append(f"{file}.example carries a value for {key}")
    everything = "\n".join(f.scripts.values())
    for file, values in f.examples.items():
        for key in values:
            # POSTGRES_*: the postgres image; AWS_*: boto3 and pyarrow, in every process.
            if not (key in everything or key.startswith("POSTGRES_")
                    or key in S3_KEYS + S3_SETTINGS):
                problems.append(f"{file}.example sets {key}, which nothing reads")
    return problems


def check_image_tags(f: Files) -> list[str]:
    """One image, tagged with the package version: compose (CPU and GPU), KubeRay, README."""
    problems = []
    version = f.pyproject["project"]["version"]
    cpu, cuda = f"rnn-sweeper:{version}-cpu", f"rnn-sweeper:{version}-cuda"
    for name in our_services(f):
        if resolve(f.compose["services"][name]["image"]) != cpu:
            problems.append(f"compose service {name} runs "
                            f"{resolve(f.compose['services'][name]['image'])}, not {cpu}")
    for name, service in f.compose_gpu.get("services", {}).items():
        if resolve(service.get("image", "")) != cuda:
            problems.append(f"compose.gpu.yaml service {name} runs {service.get('image')}, "
                            f"not {cuda}")
        if not resolve(service.get("build", {}).get("args", {}).get("TORCH_VARIANT", "")
                       ).startswith("cu"):
            problems.append(f"compose.gpu.yaml service {name} does not build a CUDA variant")
    for role, _, container in k8s_containers(f) + k8s_deployments(f):
        if container["image"] != cpu:
            problems.append(f"KubeRay {role} runs {container['image']}, not {cpu}")
    for tag in (cpu, cuda):
        if f"-t {tag} ." not in f.readme:
            problems.append(f"docker/README.md does not build {tag}")
    return problems


def check_volumes(f: Files) -> list[str]:
    """The results volume sits at one path on every Ray node, in KubeRay's volume variant, in
    the README's commands (or they write to the s3 profile's bucket), and the image creates it
    (and the artifacts path) for its user."""
    problems = []
    path = results_path(f)
    if not path:
        return ["ray-head does not mount the results volume"]
    services = f.compose["services"]
    if f"results:{path}" not in services["ray-worker"].get("volumes", []):
        problems.append(f"ray-worker does not mount results at {path}")
    if f"results:{path}:ro" not in services["mlflow"].get("volumes", []):
        problems.append(f"mlflow does not mount results read-only at {path}")
    artifacts = service_env(f, "mlflow").get("MLFLOW_ARTIFACTS_DESTINATION")
    if f"mlartifacts:{artifacts}" not in services["mlflow"].get("volumes", []):
        problems.append(f"MLFLOW_ARTIFACTS_DESTINATION {artifacts} is not the mlartifacts volume")
    runs = " ".join(i.args for i in f.dockerfile if i.keyword == "RUN")
    for needed in (path, artifacts):
        if not re.search(rf"mkdir -p[^&]*\s{re.escape(str(needed))}\b", runs) or \
                not re.search(rf"chown[^&]*\s{re.escape(str(needed))}\b", runs):
            problems.append(f"the image does not create {needed} for its user")
    shared = variant(f, bucket=False)
    for role, pod, container in k8s_containers(shared):
        if role == "submitter":
            continue
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
                  for v in pod.get("volumes", [])}
        pvcs = [d["metadata"]["name"] for d in k8s_kind(shared, "PersistentVolumeClaim")
                if "ReadWriteMany" in d["spec"]["accessModes"]]
        if path not in mounts or claims.get(mounts[path]) not in pvcs:
            problems.append(f"KubeRay {role} does not mount a ReadWriteMany claim at {path}")
    config = {k: v for d in k8s_kind(shared, "ConfigMap") for k, v in d.get("data", {}).items()}
    if config.get("SWEEPER_RESULTS") != path:
        problems.append(f"KubeRay SWEEPER_RESULTS {config.get('SWEEPER_RESULTS')} != {path}")
    bucket = compose_bucket(f)
    for where, argv in sweeper_commands(f):
        for out in (option(argv, "--out"), option(argv, "--results")):
            if out is None or out.startswith((path + "/", "$SWEEPER_RESULTS/")) or \
                    (bucket and out.startswith(f"s3://{bucket}/")):
                continue
            problems.append(f"{where}: {out} is neither under the shared {path} nor in the "
                            f"s3 profile's bucket {bucket}")
    return problems


def shell_words(value: str | list | None) -> list[str]:
    """A compose entrypoint or command, string or list form, as a list."""
    return [] if value is None else [value] if isinstance(value, str) else [str(x) for x in value]


def compose_bucket(f: Files) -> str | None:
    """The bucket that the s3 profile's one-shot service creates (`mc mb ... ALIAS/BUCKET`)."""
    for name in profiled(f, S3_PROFILE):
        service = f.compose["services"][name]
        command = " ".join(shell_words(service.get("entrypoint")) + shell_words(
            service.get("command")))
        made = re.search(r"\bmc mb\b[^&;]*?\s[\w-]+/([a-z0-9.-]+)", command)
        if made:
            return made.group(1)
    return None


def check_kuberay(f: Files) -> list[str]:
    """Each variant (volume, bucket) is a RayCluster and a RayJob that runs on it, with token
    auth, the image's user, compose's head ports and its own ConfigMap."""
    problems = []
    for bucket in (False, True):
        problems += [f"{'bucket' if bucket else 'volume'} variant: {problem}"
                     for problem in check_ray_manifests(variant(f, bucket))]
    return problems


def check_ray_manifests(f: Files) -> list[str]:
    problems = []
    clusters, jobs = k8s_kind(f, "RayCluster"), k8s_kind(f, "RayJob")
    if len(clusters) != 1 or len(jobs) != 1:
        return [f"expected one RayCluster and one RayJob, got {len(clusters)}, {len(jobs)}"]
    cluster, job = clusters[0], jobs[0]
    if cluster["spec"].get("rayVersion") != f.constraints.get("ray"):
        problems.append(f"rayVersion {cluster['spec'].get('rayVersion')} != the pinned ray "
                        f"{f.constraints.get('ray')}")
    selector = job["spec"].get("clusterSelector", {}).get("ray.io/cluster")
    if selector != cluster["metadata"]["name"]:
        problems.append(f"the RayJob selects cluster {selector!r}, not "
                        f"{cluster['metadata']['name']!r}")
    config = {d["metadata"]["name"]: d.get("data", {}) for d in k8s_kind(f, "ConfigMap")}
    uid = re.search(r"useradd[^&]*--uid (\d+)",
                    " ".join(i.args for i in f.dockerfile if i.keyword == "RUN"))
    head = service_env(f, "ray-head")
    secrets_used = set()
    for role, pod, container in k8s_containers(f):
        env = {e["name"]: e for e in container.get("env", [])}
        if env.get("RAY_AUTH_MODE", {}).get("value") != "token":
            problems.append(f"KubeRay {role}: RAY_AUTH_MODE is not token")
        ref = env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
        secrets_used.add((ref.get("name"), ref.get("key")))
        maps = [e["configMapRef"]["name"] for e in container.get("envFrom", [])
                if "configMapRef" in e]
        if not maps or any(m not in config for m in maps):
            problems.append(f"KubeRay {role} does not get the configuration ConfigMap")
        user = pod.get("securityContext", {}).get("runAsUser")
        if uid is None or str(user) != uid.group(1):
            problems.append(f"KubeRay {role} runs as uid {user}, not the image's user")
        if role == "head":
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            if str(ports.get("gcs-server")) != head.get("RAY_GCS_PORT") or \
                    str(ports.get("dashboard")) != head.get("RAY_DASHBOARD_PORT"):
                problems.append(f"KubeRay head ports {ports} disagree with compose's head")
    if len(secrets_used) != 1 or None in next(iter(secrets_used)):
        problems.append(f"the Ray containers take RAY_AUTH_TOKEN from {secrets_used}, not from "
                        "one secret")
    defined = {k for data in config.values() for k in data}
    used = set(re.findall(r"\$\{?(\w+)", job["spec"]["entrypoint"]))
    if used - defined:
        problems.append(f"the RayJob entrypoint uses {sorted(used - defined)}, which no "
                        "ConfigMap defines")
    entry = shlex.split(job["spec"]["entrypoint"])
    if entry[:2] != ["sweeper", "run"] or not option(entry, "--tracking-uri") \
            or not option(entry, "--out"):
        problems.append(f"the RayJob does not run `sweeper run` with --tracking-uri and --out: "
                        f"{entry}")
    return problems


def check_sweeper_commands(f: Files) -> list[str]:
    """Every `sweeper ...` shown parses with the package's CLI, names a search space that
    exists, and points at the stack's ports and services."""
    problems = []
    commands = sweeper_commands(f)
    if not any(argv[:1] == ["submit"] for _, argv in commands):
        problems.append("no `sweeper submit` example")
    head, mlflow = service_env(f, "ray-head"), service_env(f, "mlflow")
    parser = _parser()
    # Documentation spells options out: no abbreviations (argparse accepts unique prefixes).
    for sub in [parser, *parser._subparsers._group_actions[0].choices.values()]:
        sub.allow_abbrev = False
    for where, argv in commands:
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                parser.parse_args(argv)
        except SystemExit:
            problems.append(f"{where}: `sweeper {shlex.join(argv)}` is not a valid command")
            continue
        space = argv[1] if len(argv) > 1 else ""
        local = image_path_to_repo(f, space) if space.startswith("/") else ROOT / space
        if argv[0] in ("run", "submit", "validate") and (local is None or not local.is_file()):
            problems.append(f"{where}: search space {space} does not exist")
        address = option(argv, "--address")
        if address and address != f"http://127.0.0.1:{head.get('RAY_DASHBOARD_PORT')}":
            problems.append(f"{where}: --address {address} is not the head's Jobs API")
        tracking = option(argv, "--tracking-uri")
        if tracking and not tracking.startswith("$") and \
                tracking != f"http://mlflow:{mlflow.get('MLFLOW_PORT')}":
            problems.append(f"{where}: --tracking-uri {tracking} is not the mlflow service")
    return problems


def check_readme(f: Files) -> list[str]:
    """docker/README.md covers what the issue asks for and documents every knob."""
    problems = []
    for topic in ("docker build", "docker compose up", "sweeper submit", "--scale ray-worker=",
                  "http://127.0.0.1:5000", "docker compose down", "down -v",
                  "compose.gpu.yaml", results_path(f) + "/", "kubectl apply",
                  f"--profile {S3_PROFILE}", f"--out s3://{compose_bucket(f)}/",
                  *(f"docker/kuberay/{name}" for name in f.kuberay)):
        if topic not in f.readme:
            problems.append(f"docker/README.md never mentions {topic!r}")
    for name, service in f.compose["services"].items():
        for port in service.get("ports", []):
            host, published = resolve(port).split(":")[:2]
            if not re.search(rf"^\| {re.escape(host)}:{published} \|", f.readme, re.M):
                problems.append(f"docker/README.md's port table lacks {host}:{published} ({name})")
    for file in f.examples:
        if f"docker/{file}.example" not in f.readme and f"{file}.example" not in f.readme:
            problems.append(f"docker/README.md does not explain {file}")
    variables = set()
    for name in f.scripts:
        variables |= script_reads(f.scripts[name])
    for text in (yaml.safe_dump(f.compose), yaml.safe_dump(f.compose_gpu)):
        variables |= {m.group(1) for m in INTERPOLATION.finditer(text)}
    for variable in sorted(variables - {"BASH_SOURCE"}):
        if not re.search(rf"`{variable}\b", f.readme):
            problems.append(f"docker/README.md does not document {variable}")
    return problems


def check_compose_interpolation(f: Files) -> list[str]:
    """`docker compose up` works with no variable exported: every ${VAR} has a default."""
    problems = []
    for name, data in (("compose.yaml", f.compose), ("compose.gpu.yaml", f.compose_gpu)):
        for match in INTERPOLATION.finditer(yaml.safe_dump(data)):
            if match.group(2) not in (":-", "-"):
                problems.append(f"{name}: {match.group(0)} has no default")
    return problems


def check_kuberay_bucket(f: Files) -> list[str]:
    """The bucket variant shares nothing but the S3 API: no volume for results, which go to an
    s3:// URI; every Ray pod, which runs the driver or writes parts, and the MLflow server get
    the endpoint, the region and the two keys, the keys from one Secret of their own; the
    submitter, which only sends the command to the head, gets no keys."""
    problems = []
    bucket = variant(f, bucket=True)
    if not bucket.kuberay:
        return [f"no KubeRay manifests *{BUCKET_MANIFESTS}"]
    for claim in k8s_kind(bucket, "PersistentVolumeClaim"):
        problems.append(f"the bucket variant claims a volume: {claim['metadata']['name']}")
    pods = k8s_containers(bucket) + k8s_deployments(bucket)
    for role, pod, _ in pods:
        for volume in pod.get("volumes", []):
            if {"persistentVolumeClaim", "nfs", "hostPath"} & set(volume):
                problems.append(f"bucket variant {role} mounts the volume {volume['name']}")
    config = {k: v for d in k8s_kind(bucket, "ConfigMap") for k, v in d.get("data", {}).items()}
    if not str(config.get("SWEEPER_RESULTS", "")).startswith("s3://"):
        problems.append(f"bucket variant SWEEPER_RESULTS {config.get('SWEEPER_RESULTS')!r} is "
                        "not an s3:// URI")
    for job in k8s_kind(bucket, "RayJob"):
        out = option(shlex.split(job["spec"]["entrypoint"]), "--out") or ""
        if not out.startswith("$SWEEPER_RESULTS/"):
            problems.append(f"the bucket variant's RayJob writes to {out!r}, not under "
                            "$SWEEPER_RESULTS")
    secrets = set()
    ray_auth = set()
    for role, _, container in pods:
        ray_auth |= secret_refs(container, "RAY_AUTH_TOKEN")
        for key in S3_SETTINGS:
            if role != "submitter" and not k8s_value(bucket, container, key):
                problems.append(f"bucket variant {role} has no {key}")
        for key in S3_KEYS:
            sources = secret_refs(container, key)
            if role == "submitter":
                if sources:
                    problems.append(f"the submitter gets {key}, which only the head, the "
                                    "workers and the MLflow server need")
            elif len(sources) != 1:
                problems.append(f"bucket variant {role} does not take {key} from a Secret")
            secrets |= sources
    if len(secrets) != 1 or secrets & ray_auth:
        problems.append(f"the keys come from the Secrets {sorted(secrets)}, not from one of "
                        "their own")
    return problems


def check_kuberay_mlflow(f: Files) -> list[str]:
    """The bucket variant's MLflow server: docker/mlflow-server.sh, its backend store URI from a
    Secret, artifacts in the bucket and served by the server itself (so the Ray pods need no
    access to them), behind the Service that MLFLOW_TRACKING_URI names, accepting that name as
    Host."""
    problems = []
    bucket = variant(f, bucket=True)
    config = {k: v for d in k8s_kind(bucket, "ConfigMap") for k, v in d.get("data", {}).items()}
    servers = [(name, c) for name, _, c in k8s_deployments(bucket)
               if image_path_to_repo(f, (c.get("command") or [""])[0])
               == DOCKER / SCRIPTS["mlflow"]]
    if len(servers) != 1:
        return [f"expected one Deployment running docker/{SCRIPTS['mlflow']}, got "
                f"{len(servers)}"]
    name, server = servers[0]
    destination = k8s_value(bucket, server, "MLFLOW_ARTIFACTS_DESTINATION") or ""
    if not destination.startswith("s3://"):
        problems.append(f"the MLflow server keeps artifacts in {destination!r}, not a bucket")
    if "--no-serve-artifacts" in server.get("args", []) + server.get("command", []):
        problems.append("the MLflow server does not serve its artifacts (--no-serve-artifacts)")
    if not secret_refs(server, "MLFLOW_BACKEND_STORE_URI"):
        problems.append("the MLflow server's backend store URI (it holds a password) is not "
                        "from a Secret")
    tracking = re.match(r"http://([\w.-]+):(\d+)$", str(config.get("MLFLOW_TRACKING_URI", "")))
    labels = next(d for d in k8s_kind(bucket, "Deployment")
                  if d["metadata"]["name"] == name)["spec"]["template"]["metadata"]["labels"]
    services = [s for s in k8s_kind(bucket, "Service")
                if tracking and s["metadata"]["name"] == tracking.group(1)
                and any(str(port["port"]) == tracking.group(2) for port in s["spec"]["ports"])
                and s["spec"].get("selector")
                and s["spec"]["selector"].items() <= labels.items()]
    if not services:
        problems.append(f"no Service of the MLflow server answers MLFLOW_TRACKING_URI "
                        f"{config.get('MLFLOW_TRACKING_URI')!r}")
    allowed = (k8s_value(bucket, server, "MLFLOW_SERVER_ALLOWED_HOSTS") or "").split(",")
    if tracking and not any(fnmatch.fnmatch(f"{tracking.group(1)}:{tracking.group(2)}", a)
                            for a in allowed):
        problems.append(f"the MLflow server refuses the Host header the Ray pods send: allowed "
                        f"{allowed}")
    return problems


def check_kuberay_secrets(f: Files) -> list[str]:
    """No manifest writes a secret down: no Secret objects, no literal value for a variable
    named like a secret, no such key in a ConfigMap, no access key id or user:password@ in any
    value."""
    problems = []
    for name, docs in f.kuberay.items():
        for doc in docs:
            if doc.get("kind") == "Secret":
                problems.append(f"{name} holds a Secret; create it with kubectl instead")
            for key in doc.get("data", {}) if doc.get("kind") == "ConfigMap" else {}:
                if SECRET_NAME.search(key):
                    problems.append(f"{name}: the ConfigMap holds {key}")
            for match in LITERAL_CREDENTIAL.finditer(yaml.safe_dump(doc)):
                problems.append(f"{name}: a credential written down: {match.group(0)!r}")
    for role, _, container in k8s_containers(f) + k8s_deployments(f):
        for entry in container.get("env", []):
            if SECRET_NAME.search(entry["name"]) and "value" in entry:
                problems.append(f"KubeRay {role} sets {entry['name']} to a literal value")
    return problems


def check_s3_profile(f: Files) -> list[str]:
    """Compose's profile s3: MinIO (pinned) and a one-shot that creates the bucket, on an
    internal network with no published port; a bare `up` neither starts nor waits for them,
    and runs without docker/s3.env; the Ray nodes and MLflow reach MinIO where s3.env says."""
    problems = []
    services = f.compose["services"]
    members = profiled(f, S3_PROFILE)
    images = {name: services[name].get("image", "") for name in members}
    servers = [n for n, image in images.items() if re.search(r"(^|/)minio/minio:", image)]
    clients = [n for n, image in images.items() if re.search(r"(^|/)minio/mc:", image)]
    if len(servers) != 1 or len(clients) != 1:
        return [f"profile {S3_PROFILE} should run one MinIO and one mc, got {images}"]
    for name, image in images.items():
        if not re.search(r":RELEASE\.\d{4}-\d\d-\d\dT[\w-]+$", image):
            problems.append(f"service {name} runs {image}, not a pinned MinIO release")
    server, client = servers[0], clients[0]
    for name in members:
        if services[name].get("ports"):
            problems.append(f"service {name} publishes {services[name]['ports']}")
        for network in networks_of(services[name]):
            if not (f.compose.get("networks") or {}).get(network, {}).get("internal"):
                problems.append(f"service {name} joins {network}, which is not internal")
    for name in profiled(f, None):
        for other in services[name].get("depends_on", {}):
            if other in members:
                problems.append(f"service {name} depends on {other}, of profile {S3_PROFILE}")
    one_shot = services[client]
    if one_shot.get("restart") != "no" or one_shot.get("depends_on", {}).get(server, {}).get(
            "condition") != "service_healthy" or "healthcheck" not in services[server]:
        problems.append(f"{client} is not a one-shot that waits for {server} to be healthy")
    if not compose_bucket(f):
        problems.append(f"{client} creates no bucket (mc mb)")
    example = f.examples.get(S3_ENV_FILE, {})
    endpoint = re.match(r"http://([\w.-]+):(\d+)$", example.get("AWS_ENDPOINT_URL_S3", ""))
    if not endpoint or endpoint.group(1) != server or not set(S3_KEYS + S3_SETTINGS) <= set(
            example):
        problems.append(f"docker/{S3_ENV_FILE}.example does not point at {server}: {example}")
    for name, service in services.items():
        for file, required in env_files(service):
            if file == S3_ENV_FILE and required:
                problems.append(f"service {name} requires {file}; a bare `up` must run without")
    for name in ("ray-head", "ray-worker", "mlflow"):
        if (S3_ENV_FILE, False) not in env_files(services[name]):
            problems.append(f"service {name} does not read {S3_ENV_FILE}")
        if not networks_of(services[name]) & networks_of(services[server]):
            problems.append(f"service {name} shares no network with {server}")
    if not all(key in " ".join(shell_words(services[server].get("entrypoint"))) for key in S3_KEYS):
        problems.append(f"{server}'s root credentials are not the keys of {S3_ENV_FILE}")
    return problems


CHECKS: dict[str, Callable[[Files], list[str]]] = {
    check.__name__: check for check in (
        check_dockerfile, check_dependency_install, check_postgres_driver,
        check_compose_services, check_entrypoints, check_environment, check_published_ports,
        check_secrets, check_image_tags, check_volumes, check_kuberay, check_kuberay_bucket,
        check_kuberay_mlflow, check_kuberay_secrets, check_s3_profile, check_sweeper_commands,
        check_readme, check_compose_interpolation)}


# -- the tests -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files() -> Files:
    return load()


def test_files_parse(files):
    assert [i.keyword for i in files.dockerfile].count("FROM") == 1
    assert {"postgres", "mlflow", "ray-head", "ray-worker"} <= set(files.compose["services"])
    assert set(profiled(files, S3_PROFILE)) == {"minio", "s3-bucket"}
    kinds = {bucket: sorted(d["kind"] for docs in variant(files, bucket).kuberay.values()
                            for d in docs) for bucket in (False, True)}
    assert kinds == {False: ["ConfigMap", "PersistentVolumeClaim", "RayCluster", "RayJob"],
                     True: ["ConfigMap", "Deployment", "RayCluster", "RayJob", "Service"]}
    assert all(d["apiVersion"] == "ray.io/v1" for d in k8s_kind(files, "RayCluster")
               + k8s_kind(files, "RayJob"))


def test_env_files_reads_both_syntaxes():
    assert env_files({"env_file": "a.env"}) == [("a.env", True)]
    assert env_files({"env_file": ["a.env", {"path": "b.env", "required": False},
                                   {"path": "c.env"}]}) == [
        ("a.env", True), ("b.env", False), ("c.env", True)]
    assert env_files({}) == []


def test_dockerfile_parser_joins_continuations_and_drops_comments():
    parsed = parse_dockerfile("# syntax=docker/dockerfile:1\nFROM a:b\n# c\nRUN x \\\n"
                              "    # inside\n    && y\nCMD [\"s\", \"--help\"]\n")
    assert [(i.keyword, i.args) for i in parsed] == [
        ("FROM", "a:b"), ("RUN", "x     && y"), ("CMD", '["s", "--help"]')]
    assert parsed[2].exec_form() == ["s", "--help"]
    with pytest.raises(ValueError):
        parse_dockerfile("RUN a \\\n")


def test_commands_are_found(files):
    """The extraction itself: the README's submit, the compose header's, the RayJob's run."""
    commands = sweeper_commands(files)
    wheres = {where for where, _ in commands}
    assert wheres == {"docker/README.md", "docker/compose.yaml comments",
                      "docker/kuberay/rayjob.yaml", "docker/kuberay/rayjob-s3.yaml"}
    assert sum(argv[0] == "submit" for _, argv in commands) >= 3
    assert {option(argv, "--out") for _, argv in commands} >= {
        "/results/smoke", "s3://rnn-sweeper/smoke", "$SWEEPER_RESULTS/smoke"}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check_passes(files, name):
    assert CHECKS[name](files) == []


def _set(path: str, value):
    """A mutation that sets files.<path> (dots and [index]) to value."""
    def mutate(f: Files) -> None:
        keys = re.findall(r"[^.\[\]]+", path)
        target = f
        for key in keys[:-1]:
            target = getattr(target, key) if isinstance(target, Files) else \
                target[int(key) if isinstance(target, list) else key]
        last = keys[-1]
        if isinstance(target, Files):
            setattr(target, last, value)
        else:
            target[int(last) if isinstance(target, list) else last] = value
    return mutate


def _replace_in(attribute: str, key: str | None, old: str, new: str):
    def mutate(f: Files) -> None:
        container = getattr(f, attribute)
        if key is None:
            assert old in container
            setattr(f, attribute, container.replace(old, new))
        else:
            assert old in container[key]
            container[key] = container[key].replace(old, new)
    return mutate


def _dockerfile(old: str, new: str):
    def mutate(f: Files) -> None:
        hits = [i for i in f.dockerfile if old in f"{i.keyword} {i.args}"]
        assert hits, old
        for ins in hits:
            ins.keyword, _, ins.args = f"{ins.keyword} {ins.args}".replace(old, new).partition(" ")
    return mutate


def _head_container(f: Files, file: str = "raycluster.yaml") -> dict:
    return k8s_doc(f, file, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"][
        "containers"][0]


def _worker_container(f: Files, file: str = "raycluster-s3.yaml") -> dict:
    return k8s_doc(f, file, "RayCluster")["spec"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"][0]


def _job(f: Files, file: str = "rayjob.yaml") -> dict:
    return k8s_doc(f, file, "RayJob")


def _submitter(f: Files, file: str = "rayjob-s3.yaml") -> dict:
    return _job(f, file)["spec"]["submitterPodTemplate"]["spec"]["containers"][0]


def _mlflow_server(f: Files) -> dict:
    return k8s_doc(f, "mlflow-s3.yaml", "Deployment")["spec"]["template"]["spec"][
        "containers"][0]


def _bucket_config(f: Files) -> dict:
    return k8s_doc(f, "config-s3.yaml", "ConfigMap")["data"]


MUTATIONS = [
    ("check_dockerfile", _dockerfile("USER sweeper", "USER root")),
    ("check_dockerfile", _dockerfile("COPY search_spaces search_spaces", "COPY tasks tasks2")),
    ("check_dockerfile", _set("dockerignore", ["*", "!*"])),
    ("check_dockerfile", _dockerfile("TORCH_VARIANT=cpu", "TORCH_VARIANT=cu130")),
    ("check_dependency_install", _dockerfile("['postgres']", "['test']")),
    ("check_dependency_install", _dockerfile("-c constraints.txt torch", "torch")),
    ("check_dependency_install", _dockerfile("whl/${TORCH_VARIANT}", "whl/cu130")),
    ("check_dependency_install", _dockerfile("-c constraints.txt -r", "-r")),
    ("check_dependency_install", _dockerfile(", *extras['s3']", "")),
    ("check_dependency_install", lambda f: f.constraints.pop("boto3")),
    ("check_postgres_driver", _replace_in("scripts", "mlflow-server.sh",
                                          "postgresql+psycopg2://", "postgresql://")),
    ("check_postgres_driver", lambda f: f.constraints.pop("psycopg2-binary")),
    ("check_compose_services", _set("compose.services.ray-worker.depends_on",
                                    ["ray-head"])),
    ("check_compose_services", lambda f: f.compose["services"]["postgres"].pop("healthcheck")),
    ("check_compose_services", _set("compose.services.s3-bucket.restart", "always")),
    ("check_compose_services", _set("compose.services.mlflow.depends_on.postgres.condition",
                                    "service_started")),
    ("check_entrypoints", _set("compose.services.ray-head.command",
                               ["/app/docker/ray-worker.sh"])),
    ("check_entrypoints", _replace_in("scripts", "mlflow-server.sh", "exec mlflow server",
                                      "mlflow server")),
    ("check_entrypoints", _set("compose.services.ray-worker.healthcheck.test",
                               ["CMD", "/app/docker/healthcheck.sh", "ray-head"])),
    ("check_environment", _set("compose.services.ray-worker.environment.RAY_HEAD_ADDRESS",
                               "ray-head:6380")),
    ("check_environment", _set("compose.services.ray-head.environment.RAY_DASHBOARD_PROT",
                               "8265")),
    ("check_environment", lambda f: f.compose["services"]["ray-worker"]["environment"].pop(
        "RAY_HEAD_ADDRESS")),
    ("check_environment", _set("compose.services.mlflow.environment."
                               "MLFLOW_SERVER_ALLOWED_HOSTS", "localhost")),
    ("check_published_ports", _set("compose.services.mlflow.ports",
                                   ["${SWEEPER_PUBLISH_HOST:-0.0.0.0}:5000:5000"])),
    ("check_published_ports", _set("compose.services.ray-head.ports",
                                   ["8265:8265"])),
    ("check_published_ports", _set("compose.services.ray-head.environment."
                                   "RAY_DASHBOARD_PORT", "8266")),
    ("check_secrets", _set("compose.services.ray-head.environment.RAY_AUTH_TOKEN", "abc")),
    ("check_secrets", _set("compose.services.ray-head.env_file", ["ray-secrets.env"])),
    ("check_secrets", _set("gitignore", [".venv/"])),
    ("check_secrets", lambda f: f.examples["ray-auth.env"].__setitem__("RAY_AUTH_TOKEN", "ab")),
    ("check_secrets", lambda f: f.examples["s3.env"].__setitem__("AWS_SECRET_ACCESS_KEY", "ab")),
    ("check_secrets", _set("compose.services.ray-worker.env_file",
                           ["ray-auth.env", {"path": "bucket.env", "required": False}])),
    ("check_secrets", _set("compose.services.ray-head.environment.AWS_SECRET_ACCESS_KEY",
                           "abc")),
    ("check_image_tags", _set("compose.services.mlflow.image", "rnn-sweeper:0.0.9-cpu")),
    ("check_image_tags", lambda f: _head_container(f).__setitem__("image", "rnn-sweeper:latest")),
    ("check_image_tags", _set("compose_gpu.services.ray-worker.image", "rnn-sweeper:0.1.0-cpu")),
    ("check_image_tags", _replace_in("readme", None, "-t rnn-sweeper:0.1.0-cuda .",
                                     "-t rnn-sweeper:cuda .")),
    ("check_volumes", _set("compose.services.ray-worker.volumes", ["results:/data"])),
    ("check_volumes", _set("compose.services.mlflow.volumes",
                           ["mlartifacts:/mlartifacts", "results:/results"])),
    ("check_volumes", lambda f: _head_container(f)["volumeMounts"][0].__setitem__(
        "mountPath", "/data")),
    ("check_volumes", _replace_in("readme", None, "--out /results/smoke", "--out /tmp/smoke")),
    ("check_volumes", _dockerfile("mkdir -p /results /mlartifacts", "mkdir -p /results")),
    ("check_volumes", _replace_in("readme", None, "--out s3://rnn-sweeper/smoke",
                                  "--out s3://elsewhere/smoke")),
    ("check_volumes", lambda f: f.compose["services"]["s3-bucket"]["entrypoint"].__setitem__(
        -1, f.compose["services"]["s3-bucket"]["entrypoint"][-1].replace(
            "store/rnn-sweeper", "store/sweeps"))),
    ("check_kuberay", lambda f: k8s_doc(f, "raycluster.yaml", "RayCluster")["spec"].__setitem__(
        "rayVersion", "2.9.0")),
    ("check_kuberay", lambda f: _job(f)["spec"]["clusterSelector"].__setitem__(
        "ray.io/cluster", "other")),
    # The bucket's RayJob on the volume's cluster: each variant selects its own.
    ("check_kuberay", lambda f: _job(f, "rayjob-s3.yaml")["spec"]["clusterSelector"].__setitem__(
        "ray.io/cluster", "rnn-sweeper")),
    ("check_kuberay", lambda f: _head_container(f)["env"].pop(0)),
    ("check_kuberay", lambda f: _head_container(f, "raycluster-s3.yaml")["env"].pop(0)),
    ("check_kuberay", lambda f: _job(f)["spec"].__setitem__(
        "entrypoint", 'sweeper run /app/search_spaces/smoke.yaml --out "$RESULTS/x" '
                      '--tracking-uri "$MLFLOW_TRACKING_URI"')),
    ("check_kuberay", lambda f: _submitter(f, "rayjob.yaml").pop("envFrom")),
    ("check_kuberay_bucket", lambda f: k8s_doc(f, "raycluster-s3.yaml", "RayCluster")["spec"][
        "headGroupSpec"]["template"]["spec"].__setitem__(
        "volumes", [{"name": "results",
                     "persistentVolumeClaim": {"claimName": "rnn-sweeper-results"}}])),
    ("check_kuberay_bucket", lambda f: f.kuberay["config-s3.yaml"].append(
        copy.deepcopy(k8s_doc(f, "config.yaml", "PersistentVolumeClaim")))),
    ("check_kuberay_bucket", lambda f: _bucket_config(f).__setitem__("SWEEPER_RESULTS",
                                                                     "/results")),
    ("check_kuberay_bucket", lambda f: _worker_container(f).__setitem__("env", [
        e for e in _worker_container(f)["env"] if e["name"] != "AWS_SECRET_ACCESS_KEY"])),
    ("check_kuberay_bucket", lambda f: _head_container(f, "raycluster-s3.yaml")["envFrom"][0][
        "configMapRef"].__setitem__("name", "rnn-sweeper-config")),
    ("check_kuberay_bucket", lambda f: _submitter(f).setdefault("envFrom", []).append(
        {"secretRef": {"name": "rnn-sweeper-s3"}})),
    ("check_kuberay_bucket", lambda f: [e["valueFrom"]["secretKeyRef"].__setitem__(
        "name", "rnn-sweeper-ray-auth") for e in _worker_container(f)["env"]
        if e["name"] == "AWS_ACCESS_KEY_ID"]),
    ("check_kuberay_bucket", lambda f: _mlflow_server(f).__setitem__("env", [
        e for e in _mlflow_server(f)["env"] if e["name"] != "AWS_ACCESS_KEY_ID"])),
    ("check_kuberay_mlflow", lambda f: _mlflow_server(f).__setitem__(
        "args", ["--no-serve-artifacts"])),
    ("check_kuberay_mlflow", lambda f: _bucket_config(f).__setitem__(
        "MLFLOW_ARTIFACTS_DESTINATION", "/mlartifacts")),
    ("check_kuberay_mlflow", lambda f: k8s_doc(f, "mlflow-s3.yaml", "Service")[
        "metadata"].__setitem__("name", "tracking")),
    ("check_kuberay_mlflow", lambda f: k8s_doc(f, "mlflow-s3.yaml", "Service")[
        "spec"].pop("selector")),
    ("check_kuberay_mlflow", lambda f: [e.__setitem__("value", "localhost") for e in
                                        _mlflow_server(f)["env"]
                                        if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS"]),
    ("check_kuberay_mlflow", lambda f: _mlflow_server(f)["env"].__setitem__(0, {
        "name": "MLFLOW_BACKEND_STORE_URI", "value": "sqlite:////tmp/mlflow.db"})),
    ("check_kuberay_mlflow", lambda f: f.kuberay.__setitem__("mlflow-s3.yaml", [])),
    ("check_kuberay_secrets", lambda f: _head_container(f, "raycluster-s3.yaml")["env"].append(
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "abc"})),
    ("check_kuberay_secrets", lambda f: _bucket_config(f).__setitem__(
        "AWS_SECRET_ACCESS_KEY", "abc")),
    ("check_kuberay_secrets", lambda f: _bucket_config(f).__setitem__(
        "SWEEPER_RESULTS", "s3://sweeper:hunter22@bucket/sweeps")),
    ("check_kuberay_secrets", lambda f: f.kuberay["config-s3.yaml"].append(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rnn-sweeper-s3"},
         "stringData": {"access_key_id": "AKIAIOSFODNN7EXAMPLE"}})),
    ("check_s3_profile", _set("compose.services.ray-head.depends_on.minio",
                              {"condition": "service_healthy"})),
    ("check_s3_profile", _set("compose.services.minio.ports", ["127.0.0.1:9000:9000"])),
    ("check_s3_profile", _set("compose.services.minio.image", "minio/minio:latest")),
    ("check_s3_profile", _set("compose.services.ray-worker.env_file",
                              ["ray-auth.env", "s3.env"])),
    ("check_s3_profile", _set("compose.services.mlflow.env_file", ["postgres.env"])),
    ("check_s3_profile", _set("compose.networks.objects", {})),
    ("check_s3_profile", _set("compose.services.s3-bucket.restart", "unless-stopped")),
    ("check_s3_profile", lambda f: f.examples["s3.env"].__setitem__(
        "AWS_ENDPOINT_URL_S3", "http://s3:9000")),
    ("check_s3_profile", lambda f: f.compose["services"]["minio"].pop("profiles")),
    ("check_sweeper_commands", _replace_in("readme", None, "--tracking-uri http://mlflow:5000",
                                           "--tracking http://mlflow:5000")),
    ("check_sweeper_commands", _replace_in("readme", None, "--tracking-uri http://mlflow:5000",
                                           "--tracking-uri http://localhost:5000")),
    ("check_sweeper_commands", _replace_in("readme", None, "submit search_spaces/smoke.yaml",
                                           "submit search_spaces/missing.yaml")),
    ("check_sweeper_commands", _replace_in("readme", None, "--address http://127.0.0.1:8265",
                                           "--address http://127.0.0.1:8266")),
    ("check_sweeper_commands", lambda f: _job(f)["spec"].__setitem__(
        "entrypoint", "sweeper sweep /app/search_spaces/smoke.yaml")),
    ("check_readme", _replace_in("readme", None, "--scale ray-worker=4", "--scale worker=4")),
    ("check_readme", _replace_in("readme", None, "`RAY_HEAD_ADDRESS`", "`RAY_HEAD`")),
    ("check_readme", _replace_in("readme", None, "| 127.0.0.1:8265 |", "| localhost:8265 |")),
    ("check_readme", _replace_in("readme", None, "--profile s3", "--profile=s3")),
    ("check_readme", _replace_in("readme", None, "docker/kuberay/mlflow-s3.yaml",
                                 "docker/kuberay/mlflow.yaml")),
    ("check_compose_interpolation", _set("compose.services.ray-worker.environment.RAY_NUM_CPUS",
                                         "${RAY_WORKER_CPUS}")),
]


@pytest.mark.parametrize("check, mutate", MUTATIONS,
                         ids=[f"{c}-{i}" for i, (c, _) in enumerate(MUTATIONS)])
def test_each_check_catches_its_mutation(files, check, mutate):
    broken = copy.deepcopy(files)
    mutate(broken)
    assert CHECKS[check](broken), f"{check} did not notice"


def test_every_check_has_a_mutation():
    assert {check for check, _ in MUTATIONS} == set(CHECKS)
