#!/usr/bin/env bash
# Deploys (or updates: it is idempotent) cairn to an AWS account:
#   1. the CloudFormation stack <name> from infra/template.yaml: data bucket, replica bucket(s) (versioned,
#      encrypted, public access blocked), the query function's least-privilege role, its log group, and
#      CloudWatch alarms on its error rate and p99 latency (from the metrics in its log lines);
#   2. the Lambda function <name>-query (provided.al2023, x86_64, code = cargo lambda's bootstrap.zip);
#   3. its function URL, AuthType AWS_IAM (NONE only with --public, which warns), and prints the URL.
#
# usage: infra/deploy.sh --name NAME [--prefix cairn] [--replicas 1|2] [--memory MB] [--zip bootstrap.zip]
#                        [--concurrency N] [--public] [--alarm-topic SNS_ARN] [--error-rate PCT] [--p99-ms MS]
#                        [--vpc-id VPC --vpc-subnets SUBNET,SUBNET [--vpc-route-tables RTB,RTB] [--cache-gb 5]]
#                        [--remove-cache] [--container-roles ecs|eks [--eks-oidc-provider ISSUER] [--k8s-namespace NS]]
# --concurrency reserves N concurrent executions for the function (default 100): also its ceiling, so a
# public URL cannot scale it to the account's limit. The alarms fire when over 3 of 5 minutes more than
# --error-rate percent (default 1) of requests answer 5xx, or the p99 is above --p99-ms (default 500); with
# --alarm-topic they notify that SNS topic.
# --vpc-id/--vpc-subnets add the shared cache tier: an ElastiCache Serverless (Valkey) cache in those private
# subnets, the function moved into them with CAIRN_SHARED_CACHE set to it, and (with --vpc-route-tables) an S3
# gateway endpoint so the function still reaches S3 without a NAT. docs/OPERATIONS.md has the trade-off.
# A function deployed that way keeps its VPC: later deploys must repeat the --vpc-* flags, or pass
# --remove-cache, which moves the function out of the VPC first and then deletes the cache (a deploy
# without either is refused: it would delete the S3 endpoint the function in the VPC reads through).
# --container-roles also creates roles for cairn as containers (docs/DEPLOY.md): ECS task roles, or EKS roles
# for the ServiceAccounts cairn and cairn-ingest (IRSA; --eks-oidc-provider is the cluster's OIDC issuer
# without https://, whose provider must exist in IAM), attaching the managed policies <name>-read and
# <name>-ingest. Later deploys keep them; `--container-roles none` removes them.
# Needs: the AWS CLI (scripts/install-tools.sh installs it and cargo-lambda), credentials and AWS_REGION.
# Without --zip it builds the function with `cargo lambda build --release`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vpc_id="" vpc_subnets="" vpc_route_tables="" cache_gb=5 remove_cache=0 container_roles="" eks_oidc="" k8s_ns=""
name="" prefix="cairn" replicas=1 memory=1024 zip="" public=0 concurrency=100 topic="" error_rate=1 p99_ms=500
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --replicas) replicas="$2"; shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    --zip) zip="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --public) public=1; shift ;;
    --alarm-topic) topic="$2"; shift 2 ;;
    --error-rate) error_rate="$2"; shift 2 ;;
    --p99-ms) p99_ms="$2"; shift 2 ;;
    --vpc-id) vpc_id="$2"; shift 2 ;;
    --vpc-subnets) vpc_subnets="$2"; shift 2 ;;
    --vpc-route-tables) vpc_route_tables="$2"; shift 2 ;;
    --cache-gb) cache_gb="$2"; shift 2 ;;
    --remove-cache) remove_cache=1; shift ;;
    --container-roles) container_roles="$2"; shift 2 ;;
    --eks-oidc-provider) eks_oidc="$2"; shift 2 ;;
    --k8s-namespace) k8s_ns="$2"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$name" ] || { echo "--name is required (see --help)" >&2; exit 2; }
: "${AWS_REGION:=${AWS_DEFAULT_REGION:-}}"
[ -n "$AWS_REGION" ] || { echo "set AWS_REGION" >&2; exit 2; }
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION" AWS_PAGER=""
fn="$name-query"
case "$container_roles" in
  ""|none|ecs) ;;
  eks) [ -n "$eks_oidc" ] || { echo "--container-roles eks needs --eks-oidc-provider (see --help)" >&2; exit 2; } ;;
  *) echo "--container-roles: none, ecs or eks" >&2; exit 2 ;;
esac
eks_oidc="${eks_oidc#https://}"
if [ -n "$vpc_id$vpc_subnets" ] && { [ -z "$vpc_id" ] || [ -z "$vpc_subnets" ]; }; then
  echo "--vpc-id and --vpc-subnets go together (see --help)" >&2; exit 2
fi
if [ -n "$vpc_id" ] && [ "$remove_cache" = 1 ]; then
  echo "--remove-cache with --vpc-*: choose one (see --help)" >&2; exit 2
fi
if [ -n "$vpc_id" ] && [ -z "$vpc_route_tables" ]; then
  echo "note: no --vpc-route-tables: the VPC must already reach S3 (a gateway endpoint or a NAT)" >&2
fi
# The function's subnets now, if it runs in a VPC.
current_subnets="$(aws lambda get-function-configuration --function-name "$fn" --output text \
  --query 'VpcConfig.SubnetIds' 2>/dev/null | tr -d '[:space:]' || true)"
[ "$current_subnets" = None ] && current_subnets=""
if [ -n "$current_subnets" ] && [ -z "$vpc_id" ]; then
  if [ "$remove_cache" = 0 ]; then
    echo "$fn runs in a VPC (the shared cache's): repeat the --vpc-* flags, or pass --remove-cache to move it out" >&2
    exit 2
  fi
  echo "== moving $fn out of its VPC (before the cache and the S3 endpoint are deleted)" >&2
  aws lambda update-function-configuration --function-name "$fn" \
    --vpc-config "SubnetIds=[],SecurityGroupIds=[]" >/dev/null
  aws lambda wait function-updated-v2 --function-name "$fn"
fi

if [ -z "$zip" ]; then
  echo "== building $fn with cargo lambda (release, x86_64)" >&2
  (cd "$here/.." && cargo lambda build --release -p cairn-functions --bin cairn-query --output-format zip >&2)
  zip="${CARGO_TARGET_DIR:-$here/../target}/lambda/cairn-query/bootstrap.zip"
fi
[ -f "$zip" ] || { echo "no function package at $zip" >&2; exit 1; }

# Container roles are passed only when asked for: a later deploy without --container-roles keeps the stack's
# roles (CloudFormation keeps a parameter's previous value), instead of deleting roles running tasks use.
roles_args=()
[ -n "$container_roles" ] && roles_args+=("ContainerRoles=$container_roles")
[ -n "$eks_oidc" ] && roles_args+=("EksOidcProvider=$eks_oidc")
[ -n "$k8s_ns" ] && roles_args+=("K8sNamespace=$k8s_ns")
echo "== stack $name" >&2
aws cloudformation deploy --stack-name "$name" --template-file "$here/template.yaml" \
  --capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset \
  --parameter-overrides "Name=$name" "Prefix=$prefix" "Replicas=$replicas" "AlarmTopicArn=$topic" \
  "ErrorRatePercent=$error_rate" "LatencyP99Ms=$p99_ms" "VpcId=$vpc_id" "VpcSubnetIds=$vpc_subnets" \
  "VpcRouteTableIds=$vpc_route_tables" "SharedCacheMaxGB=$cache_gb" ${roles_args[@]+"${roles_args[@]}"} >&2
output() {
  aws cloudformation describe-stacks --stack-name "$name" --output text \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue"
}
data="$(output DataBucket)"; replica_buckets="$(output ReplicaBuckets)"; role="$(output QueryRoleArn)"
ingest_policy="$(output IngestPolicyArn)"
store="s3://$data/$prefix"
replicas_arg="$(echo "$replica_buckets" | tr ',' '\n' | sed "s|^|s3://|; s|\$|/$prefix|" | paste -sd, -)"
# CAIRN_REPLICAS: where the function reads a keyspace's pointer when the data bucket cannot be read.
shared_cache="$(output SharedCacheUrl)"; vpc_config="$(output FunctionVpcConfig)"
cache_env=""
[ -n "$shared_cache" ] && [ "$shared_cache" != None ] && cache_env=",\"CAIRN_SHARED_CACHE\":\"$shared_cache\""
env_json="{\"Variables\":{\"CAIRN_STORE\":\"$store\",\"CAIRN_REPLICAS\":\"$replicas_arg\",\"CAIRN_LOG_FORMAT\":\"json\"$cache_env}}"
# In the cache's VPC when there is one. (Deploying without --vpc-* later leaves the function's VPC as it was:
# detach it with `aws lambda update-function-configuration --vpc-config SubnetIds=[],SecurityGroupIds=[]`.)
vpc_args=()
[ -n "$vpc_config" ] && [ "$vpc_config" != None ] && vpc_args=(--vpc-config "$vpc_config")

# A function that LocalStack cannot run (no Docker) ends in state Failed; waiting is best effort.
wait_fn() { aws lambda wait "$1" --function-name "$fn" 2>/dev/null || echo "   (function not $1 yet; continuing)" >&2; }
state="$(aws lambda get-function --function-name "$fn" --output text --query Configuration.State 2>/dev/null || true)"
if [ "$state" = Failed ]; then
  # A function that never became active (e.g. on an emulator without Docker) cannot be updated: recreate it.
  echo "== $fn is in state Failed: recreating it" >&2
  aws lambda delete-function-url-config --function-name "$fn" 2>/dev/null || true
  aws lambda delete-function --function-name "$fn" 2>/dev/null || true
  if aws lambda get-function --function-name "$fn" >/dev/null 2>&1; then
    echo "could not delete the failed function $fn" >&2
    exit 1
  fi
  state=""
fi
if [ -n "$state" ]; then
  echo "== updating function $fn" >&2
  aws lambda update-function-code --function-name "$fn" --zip-file "fileb://$zip" >/dev/null
  wait_fn function-updated-v2
  aws lambda update-function-configuration --function-name "$fn" --role "$role" --memory-size "$memory" \
    --timeout 10 --environment "$env_json" ${vpc_args[@]+"${vpc_args[@]}"} >/dev/null
else
  echo "== creating function $fn" >&2
  # Into a VPC just after its role gained the network-interface policy, Lambda may refuse the role for a
  # few seconds (IAM propagates): retried.
  create_err="$(mktemp)"
  for try in 1 2 3 4 5 6; do
    if aws lambda create-function --function-name "$fn" --runtime provided.al2023 --architectures x86_64 \
      --handler bootstrap --role "$role" --memory-size "$memory" --timeout 10 \
      --zip-file "fileb://$zip" --environment "$env_json" ${vpc_args[@]+"${vpc_args[@]}"} >/dev/null 2>"$create_err"; then
      break
    fi
    if [ "$try" = 6 ] || ! grep -qi 'role\|CreateNetworkInterface' "$create_err"; then
      cat "$create_err" >&2; rm -f "$create_err"; exit 1
    fi
    echo "   (the role is not usable yet; retrying in 10 s)" >&2
    sleep 10
  done
  rm -f "$create_err"
  wait_fn function-active-v2
fi

aws lambda put-function-concurrency --function-name "$fn" \
  --reserved-concurrent-executions "$concurrency" >/dev/null

auth=AWS_IAM
if [ "$public" = 1 ]; then
  auth=NONE
  echo "WARNING: --public makes $fn's URL callable by anyone on the internet, unauthenticated." >&2
fi
if aws lambda get-function-url-config --function-name "$fn" >/dev/null 2>&1; then
  aws lambda update-function-url-config --function-name "$fn" --auth-type "$auth" >/dev/null
else
  aws lambda create-function-url-config --function-name "$fn" --auth-type "$auth" >/dev/null
fi
aws lambda remove-permission --function-name "$fn" --statement-id public-url >/dev/null 2>&1 || true
if [ "$auth" = NONE ]; then
  aws lambda add-permission --function-name "$fn" --statement-id public-url --action lambda:InvokeFunctionUrl \
    --principal '*' --function-url-auth-type NONE >/dev/null
fi
url="$(aws lambda get-function-url-config --function-name "$fn" --output text --query FunctionUrl)"

cat >&2 <<MSG
== deployed
  function URL : $url  (auth $auth)
  store        : $store   replicas: $replicas_arg
  ingest       : cairn ingest DATA --keyspace default --store $store --replicas $replicas_arg
                 (as a principal with the managed policy $ingest_policy attached)
  query        : cairn --url $url get KEY
MSG
container_roles="$(aws cloudformation describe-stacks --stack-name "$name" --output text \
  --query "Stacks[0].Parameters[?ParameterKey=='ContainerRoles'].ParameterValue")"
if [ "$container_roles" = ecs ]; then
  echo "  ECS task roles: server $(output ServerTaskRoleArn), ingest $(output IngestTaskRoleArn) (infra/ecs/)" >&2
elif [ "$container_roles" = eks ]; then
  echo "  IRSA roles: server $(output ServerPodRoleArn), ingest $(output IngestPodRoleArn) (infra/k8s/ overlay)" >&2
fi
echo "$url"
