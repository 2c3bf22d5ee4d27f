#!/usr/bin/env python3
"""Validate ECS task definitions (infra/ecs/*.json) offline, against the ECS API's own model.

Each file is the input of RegisterTaskDefinition (`aws ecs register-task-definition --cli-input-json
file://...`). botocore ships that operation's input shape (botocore/data/ecs/*/service-2.json) and the
validator the AWS CLI runs before sending: unknown keys, wrong types, missing required members and
out-of-range values are errors, as they would be at registration. botocore does not check enums, so this
does too; then a few rules of cairn's own deployment (docs/DEPLOY.md). Exit 1 on any problem.

Usage: check-ecs-task.py FILE...   (needs botocore: scripts/check-deploy.sh installs it)
"""
import json
import re
import sys

import botocore.session
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters

# Fargate's valid task sizes: cpu units -> memory MiB allowed (AWS docs, "Task CPU and memory").
FARGATE_SIZES = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4097, 1024)),
    1024: list(range(2048, 8193, 1024)),
    2048: list(range(4096, 16385, 1024)),
    4096: list(range(8192, 30721, 1024)),
    8192: list(range(16384, 61441, 4096)),
    16384: list(range(32768, 122881, 8192)),
}


def enum_errors(value, shape, path):
    """Values of enum-typed strings that the model does not list (botocore's validator skips enums)."""
    errors = []
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, member in shape.members.items():
            if key in value:
                errors += enum_errors(value[key], member, f"{path}.{key}")
    elif kind == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            errors += enum_errors(item, shape.member, f"{path}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            errors += enum_errors(item, shape.value, f"{path}.{key}")
    elif kind == "string" and shape.enum and isinstance(value, str) and value not in shape.enum:
        errors.append(f"{path}: {value!r} is not one of {shape.enum}")
    return errors


def seconds(duration):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", duration)
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n


def cairn_rules(task):
    """What cairn's image and drain need, beyond what the API accepts."""
    errors = []
    if task.get("networkMode") != "awsvpc" or "FARGATE" not in task.get("requiresCompatibilities", []):
        errors.append("expected a Fargate task (networkMode awsvpc, requiresCompatibilities FARGATE)")
    try:
        cpu, mem = int(task["cpu"]), int(task["memory"])
        if mem not in FARGATE_SIZES.get(cpu, []):
            errors.append(f"cpu {cpu} / memory {mem} is not a Fargate task size")
    except (KeyError, ValueError):
        errors.append("Fargate needs task-level cpu and memory (numbers as strings)")
    volumes = {v["name"] for v in task.get("volumes", [])}
    for c in task["containerDefinitions"]:
        name = c.get("name", "?")
        user = c.get("user", "")
        if not user or user.split(":")[0] in ("0", "root"):
            errors.append(f"{name}: must run as a non-root user (the image's 65532), got {user!r}")
        if c.get("readonlyRootFilesystem") is not True:
            errors.append(f"{name}: readonlyRootFilesystem must be true")
        mounts = {m["containerPath"]: m["sourceVolume"] for m in c.get("mountPoints", [])}
        if "/tmp" not in mounts:
            errors.append(f"{name}: needs a writable volume at /tmp (the root filesystem is read-only)")
        errors += [f"{name}: mount of undeclared volume {v!r}" for v in mounts.values() if v not in volumes]
        check = c.get("healthCheck", {}).get("command", [])
        if check and check[0] != "CMD":
            errors.append(f"{name}: healthCheck must be [\"CMD\", ...]: the image has no shell for CMD-SHELL")
        stop = c.get("stopTimeout", 30)
        if stop > 120:
            errors.append(f"{name}: stopTimeout {stop} exceeds Fargate's 120 s")
        env = {e["name"]: e["value"] for e in c.get("environment", [])}
        if c.get("command", [None])[0] == "serve":
            drain = seconds(env.get("CAIRN_DRAIN_TIMEOUT", "25s"))
            if drain is None or stop < drain + 1:
                errors.append(f"{name}: stopTimeout {stop} must exceed CAIRN_DRAIN_TIMEOUT "
                              f"({env.get('CAIRN_DRAIN_TIMEOUT', '25s')}) so the drain ends before SIGKILL")
        if not env.get("CAIRN_STORE", "").startswith("s3://"):
            errors.append(f"{name}: CAIRN_STORE must be an s3:// root")
    return errors


def main(paths):
    shape = botocore.session.get_session().get_service_model("ecs") \
        .operation_model("RegisterTaskDefinition").input_shape
    failed = False
    for path in paths:
        try:
            with open(path) as f:
                task = json.load(f)
            errors = []
            try:
                validate_parameters(task, shape)
            except ParamValidationError as e:
                errors += [line for line in str(e).splitlines()[1:] if line.strip()] or [str(e)]
            errors += enum_errors(task, shape, "task")
            if not errors:
                errors += cairn_rules(task)
        except (OSError, ValueError) as e:
            errors = [str(e)]
        for err in errors:
            print(f"{path}: {err}", file=sys.stderr)
        print(f"{path}: {'FAIL' if errors else 'ok'} (RegisterTaskDefinition, botocore "
              f"{botocore.__version__})", file=sys.stderr)
        failed |= bool(errors)
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
