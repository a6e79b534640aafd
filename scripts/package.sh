#!/usr/bin/env bash
# Package a stage as one CloudFormation (SAM) template plus the Lambda zip:
#     scripts/package.sh [STAGE] [OUTDIR]        (default: prod build/package)
#
# `chalice package` merges infra/resources.yaml into what it generates; the result is
# OUTDIR/sam.yaml and OUTDIR/deployment.zip, for `aws cloudformation package` and
# `deploy` (docs/operations.md). No AWS credentials are used. Chalice insists on a
# region, but the template refers to ${AWS::Region} only, so any region gives the same
# output. The dependencies (requirements.txt) come from PyPI on the first run and from
# Chalice's cache in .chalice/deployments/ afterwards.
set -euo pipefail

stage=${1:-prod}
out=${2:-build/package}
python=${PYTHON:-.venv/bin/python}

cd "$(dirname "$0")/.."
case "$stage" in
    dev|prod) ;;
    *) echo "package: stage must be dev or prod, not '$stage'" >&2; exit 2 ;;
esac

rm -rf "$out"
AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} \
    "$(dirname "$python")/chalice" package --stage "$stage" \
    --merge-template infra/resources.yaml "$out"

# Pin the template's Stage parameter to the stage the code was packaged with, so a dev
# package can never be deployed under prod's names (or the other way round).
"$python" - "$out/sam.yaml" "$stage" <<'EOF'
import sys

import yaml

path, stage = sys.argv[1], sys.argv[2]
with open(path) as f:
    template = yaml.safe_load(f)
template["Parameters"]["Stage"].update(Default=stage, AllowedValues=[stage])
with open(path, "w") as f:
    yaml.safe_dump(template, f, sort_keys=False)
EOF

echo "package: $out/sam.yaml and $out/deployment.zip (stage $stage)"
