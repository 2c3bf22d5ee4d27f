#!/usr/bin/env bash
# Removes everything deploy.sh created for NAME: the function URL, the function, every object version in the
# buckets, and the CloudFormation stack (buckets, role, log group). Deletes data: asks unless --yes.
# usage: infra/teardown.sh --name NAME [--yes]
set -euo pipefail
name="" yes=0
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --yes) yes=1; shift ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$name" ] || { echo "--name is required" >&2; exit 2; }
export AWS_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}" AWS_PAGER=""
export AWS_DEFAULT_REGION="$AWS_REGION"
fn="$name-query"
if [ "$yes" != 1 ]; then
  read -r -p "Delete cairn deployment $name and ALL its data? [y/N] " answer
  [ "$answer" = y ] || [ "$answer" = Y ] || exit 1
fi

aws lambda delete-function-url-config --function-name "$fn" 2>/dev/null || true
aws lambda delete-function --function-name "$fn" 2>/dev/null || true

# Versioned buckets must be emptied of every version and delete marker before the stack can delete them.
buckets="$(aws cloudformation describe-stack-resources --stack-name "$name" --output text \
  --query "StackResources[?ResourceType=='AWS::S3::Bucket'].PhysicalResourceId" 2>/dev/null || true)"
batch="$(mktemp)"
trap 'rm -f "$batch"' EXIT
for bucket in $buckets; do
  while :; do
    aws s3api list-object-versions --bucket "$bucket" --max-items 1000 --output json \
      --query '{Objects: [Versions, DeleteMarkers][][].{Key: Key, VersionId: VersionId}, Quiet: `true`}' > "$batch" 2>/dev/null || break
    grep -q '"Key"' "$batch" || break
    aws s3api delete-objects --bucket "$bucket" --delete "file://$batch" >/dev/null
  done
done

if aws cloudformation describe-stacks --stack-name "$name" >/dev/null 2>&1; then
  aws cloudformation delete-stack --stack-name "$name"
  aws cloudformation wait stack-delete-complete --stack-name "$name"
fi
# Belt and braces: a bucket the stack did not remove (LocalStack leaves conditional ones) is removed here.
for bucket in $buckets; do
  aws s3api delete-bucket --bucket "$bucket" 2>/dev/null || true
done
echo "removed $name" >&2
