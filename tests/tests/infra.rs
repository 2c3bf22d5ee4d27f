//! infra/deploy.sh and infra/teardown.sh against LocalStack: every resource and policy exists as specified,
//! re-running updates in place, `--public` is explicit and warns, teardown leaves nothing. LocalStack without
//! Docker cannot run the function (it ends in state Failed), so invoking it is tested in lambda_watch.rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_tests::{cargo_command, path_with_tools, s3, target_dirs, workspace_root};
use serde_json::Value;

fn env() -> Vec<(&'static str, String)> {
    let mut e = s3::aws_settings();
    e.push(("PATH", path_with_tools()));
    e.push(("AWS_PAGER", String::new()));
    e
}

fn aws(args: &[&str]) -> Result<Value, String> {
    let out = Command::new("aws").args(args).args(["--output", "json"]).envs(env()).output().expect("run aws");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).expect("aws json") })
}

fn script(name: &str, args: &[&str]) -> (bool, String, String) {
    let out =
        Command::new("bash").arg(workspace_root().join("infra").join(name)).args(args).envs(env()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real cairn-query binary (debug build, stripped to fit Lambda's 50 MB zip limit) as bootstrap.zip.
fn function_zip(dir: &Path) -> PathBuf {
    assert!(
        cargo_command()
            .args(["build", "-q", "-p", "cairn-functions", "--bin", "cairn-query"])
            .status()
            .unwrap()
            .success()
    );
    let bin = target_dirs().1.join("cairn-query");
    assert!(Command::new("strip").arg("-o").arg(dir.join("bootstrap")).arg(&bin).status().unwrap().success());
    let zip = dir.join("bootstrap.zip");
    let py = "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED); z.write(sys.argv[2], 'bootstrap'); z.close()";
    assert!(Command::new("python3").args(["-c", py]).arg(&zip).arg(dir.join("bootstrap")).status().unwrap().success());
    zip
}

fn check_bucket(bucket: &str) {
    assert_eq!(aws(&["s3api", "get-bucket-versioning", "--bucket", bucket]).unwrap()["Status"], "Enabled", "{bucket}");
    let enc = aws(&["s3api", "get-bucket-encryption", "--bucket", bucket]).unwrap();
    assert_eq!(
        enc["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    let block = aws(&["s3api", "get-public-access-block", "--bucket", bucket]).unwrap();
    for flag in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        assert_eq!(block["PublicAccessBlockConfiguration"][flag], true, "{bucket} {flag}");
    }
    // No request without TLS.
    let policy = aws(&["s3api", "get-bucket-policy", "--bucket", bucket]).unwrap();
    let policy: Value = serde_json::from_str(policy["Policy"].as_str().unwrap()).unwrap();
    let deny = &policy["Statement"][0];
    assert_eq!((deny["Effect"].as_str(), deny["Action"].as_str()), (Some("Deny"), Some("s3:*")), "{bucket}: {policy}");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false", "{bucket}: {policy}");
}

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        Value::String(s) => vec![s.clone()],
        _ => vec![],
    }
}

#[test]
fn deploy_creates_everything_as_specified_and_teardown_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let zip = function_zip(dir.path());
    let zip = zip.to_str().unwrap();
    let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let function = format!("{name}-query");

    let (ok, url, log) = script("deploy.sh", &["--name", &name, "--zip", zip, "--replicas", "2"]);
    assert!(ok, "deploy failed:\n{log}");
    assert!(url.trim().starts_with("http") && url.contains("lambda-url"), "{url}");

    // Stack and buckets: versioned, encrypted, public access blocked.
    let stack = aws(&["cloudformation", "describe-stacks", "--stack-name", &name]).unwrap();
    assert_eq!(stack["Stacks"][0]["StackStatus"], "CREATE_COMPLETE");
    let outputs: Vec<(String, String)> = stack["Stacks"][0]["Outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["OutputKey"].as_str().unwrap().into(), o["OutputValue"].as_str().unwrap().into()))
        .collect();
    let out = |k: &str| outputs.iter().find(|(key, _)| key == k).unwrap().1.clone();
    let (data, replicas, role_arn) = (out("DataBucket"), out("ReplicaBuckets"), out("QueryRoleArn"));
    let replicas: Vec<&str> = replicas.split(',').collect();
    assert_eq!(replicas.len(), 2);
    for b in std::iter::once(data.as_str()).chain(replicas.iter().copied()) {
        check_bucket(b);
    }

    // The role: assumable by Lambda only; reads objects under cairn/ and lists that prefix (the managed policy
    // <name>-read, which container roles attach too; the same statements also inline, for stacks updated from
    // before it), writes its logs.
    let role = aws(&["iam", "get-role", "--role-name", &function]).unwrap();
    assert_eq!(role["Role"]["Arn"], role_arn.as_str());
    let trust = &role["Role"]["AssumeRolePolicyDocument"]["Statement"];
    assert_eq!(trust.as_array().unwrap().len(), 1);
    assert_eq!(trust[0]["Principal"]["Service"], "lambda.amazonaws.com");
    let attached = aws(&["iam", "list-attached-role-policies", "--role-name", &function]).unwrap();
    let read_arn = out("ReadPolicyArn");
    assert_eq!(attached["AttachedPolicies"].as_array().unwrap().len(), 1, "{attached}");
    assert_eq!(attached["AttachedPolicies"][0]["PolicyArn"], read_arn.as_str());
    assert_eq!(
        aws(&["iam", "list-role-policies", "--role-name", &function]).unwrap()["PolicyNames"],
        serde_json::json!(["cairn-read-keyspaces"])
    );
    let policy =
        aws(&["iam", "get-role-policy", "--role-name", &function, "--policy-name", "cairn-read-keyspaces"]).unwrap();
    let mut statements = policy["PolicyDocument"]["Statement"].as_array().unwrap().clone();
    statements.extend(managed_statements(&read_arn));
    let mut actions = BTreeSet::new();
    for st in &statements {
        assert_eq!(st["Effect"], "Allow");
        let acts = as_list(&st["Action"]);
        let resources = as_list(&st["Resource"]);
        assert!(!resources.iter().any(|r| r == "*"), "no wildcard resources: {st}");
        if acts.contains(&"s3:GetObject".to_string()) {
            assert_eq!(resources.len(), 3, "{st}");
            assert!(resources.iter().all(|r| r.ends_with("/cairn/*")), "GetObject only under the prefix: {st}");
        }
        if acts.contains(&"s3:ListBucket".to_string()) {
            assert_eq!(st["Condition"]["StringLike"]["s3:prefix"], serde_json::json!(["cairn/*", "cairn/"]), "{st}");
        }
        actions.extend(acts);
    }
    let expected: BTreeSet<String> = ["s3:GetObject", "s3:ListBucket", "logs:CreateLogStream", "logs:PutLogEvents"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(actions, expected, "read-only on the keyspace prefix, nothing else");

    // The ingest policy: write access to the same prefix, for whoever runs `cairn ingest`.
    let ingest_arn = out("IngestPolicyArn");
    let write = managed_statements(&ingest_arn)
        .into_iter()
        .find(|s| as_list(&s["Action"]).contains(&"s3:PutObject".to_string()))
        .unwrap();
    assert!(as_list(&write["Resource"]).iter().all(|r| r.ends_with("/cairn/*")), "{write}");

    // The function and its URL (IAM auth, no public permission).
    let conf = aws(&["lambda", "get-function-configuration", "--function-name", &function]).unwrap();
    assert_eq!(conf["Runtime"], "provided.al2023");
    assert_eq!(conf["Handler"], "bootstrap");
    assert_eq!(conf["Architectures"], serde_json::json!(["x86_64"]));
    assert_eq!(conf["Role"], role_arn.as_str());
    assert_eq!(conf["Environment"]["Variables"]["CAIRN_STORE"], format!("s3://{data}/cairn").as_str());
    let replica_roots: Vec<String> = replicas.iter().map(|b| format!("s3://{b}/cairn")).collect();
    assert_eq!(conf["Environment"]["Variables"]["CAIRN_REPLICAS"], replica_roots.join(",").as_str());
    assert_eq!(
        aws(&["lambda", "get-function-url-config", "--function-name", &function]).unwrap()["AuthType"],
        "AWS_IAM"
    );
    assert!(aws(&["lambda", "get-policy", "--function-name", &function]).is_err(), "no resource policy for an IAM URL");
    let reserved = aws(&["lambda", "get-function-concurrency", "--function-name", &function]).unwrap();
    assert_eq!(reserved["ReservedConcurrentExecutions"], 100, "a bounded function: {reserved}");
    let logs =
        aws(&["logs", "describe-log-groups", "--log-group-name-prefix", &format!("/aws/lambda/{function}")]).unwrap();
    // LocalStack's CloudFormation creates the group but does not apply or report its retention (14 days in
    // template.yaml), so only its existence is checked here.
    assert_eq!(logs["logGroups"][0]["logGroupName"], format!("/aws/lambda/{function}").as_str(), "{logs}");

    // Alarms on the metrics the function's log lines carry (EMF, namespace cairn): error rate and p99.
    let alarms = aws(&["cloudwatch", "describe-alarms", "--alarm-name-prefix", &function]).unwrap();
    let alarms = alarms["MetricAlarms"].as_array().cloned().unwrap_or_default();
    let alarm = |suffix: &str| {
        alarms
            .iter()
            .find(|a| a["AlarmName"] == format!("{function}-{suffix}").as_str())
            .unwrap_or_else(|| panic!("no {suffix} alarm in {alarms:?}"))
            .clone()
    };
    let p99 = alarm("p99-latency");
    assert_eq!((p99["Namespace"].as_str(), p99["MetricName"].as_str()), (Some("cairn"), Some("Latency")), "{p99}");
    assert_eq!(p99["ExtendedStatistic"], "p99");
    assert_eq!(p99["Threshold"], 500.0);
    assert_eq!(p99["Dimensions"], serde_json::json!([{ "Name": "FunctionName", "Value": function }]));
    let errors = alarm("error-rate");
    assert_eq!(errors["Threshold"], 1.0);
    let queries = errors["Metrics"].as_array().unwrap();
    let expr = queries.iter().find(|q| q["ReturnData"] == true).unwrap();
    assert_eq!(expr["Expression"], "100 * errors / requests", "{errors}");
    for (id, name) in [("errors", "Errors"), ("requests", "Requests")] {
        let q = queries.iter().find(|q| q["Id"] == id).unwrap_or_else(|| panic!("{id} in {errors}"));
        assert_eq!(q["MetricStat"]["Metric"]["MetricName"], name);
        assert_eq!(q["MetricStat"]["Metric"]["Namespace"], "cairn");
        assert_eq!(q["MetricStat"]["Stat"], "Sum");
    }

    // Re-running updates in place; --public is explicit and warns.
    let (ok, _, log) = script("deploy.sh", &["--name", &name, "--zip", zip, "--replicas", "2"]);
    assert!(ok, "re-deploy failed:\n{log}");
    assert_eq!(
        aws(&["cloudformation", "describe-stacks", "--stack-name", &name]).unwrap()["Stacks"][0]["Outputs"],
        stack["Stacks"][0]["Outputs"]
    );
    let (ok, _, log) = script("deploy.sh", &["--name", &name, "--zip", zip, "--replicas", "2", "--public"]);
    assert!(ok && log.contains("WARNING: --public"), "{log}");
    assert_eq!(aws(&["lambda", "get-function-url-config", "--function-name", &function]).unwrap()["AuthType"], "NONE");
    let public = aws(&["lambda", "get-policy", "--function-name", &function]).unwrap();
    assert!(public["Policy"].as_str().unwrap().contains("lambda:InvokeFunctionUrl"));

    // Data in the buckets does not stop teardown; afterwards nothing of the deployment is left.
    assert!(aws(&["s3api", "put-object", "--bucket", &data, "--key", "cairn/keyspace=x/CURRENT"]).is_ok());
    assert!(aws(&["s3api", "put-object", "--bucket", &data, "--key", "cairn/keyspace=x/CURRENT"]).is_ok());
    let (ok, _, log) = script("teardown.sh", &["--name", &name, "--yes"]);
    assert!(ok, "teardown failed:\n{log}");
    assert!(aws(&["cloudformation", "describe-stacks", "--stack-name", &name]).is_err(), "stack left");
    assert!(aws(&["lambda", "get-function", "--function-name", &function]).is_err(), "function left");
    assert!(aws(&["iam", "get-role", "--role-name", &function]).is_err(), "role left");
    assert!(aws(&["iam", "get-policy", "--policy-arn", &ingest_arn]).is_err(), "ingest policy left");
    assert!(aws(&["iam", "get-policy", "--policy-arn", &read_arn]).is_err(), "read policy left");
    for b in std::iter::once(data.as_str()).chain(replicas.iter().copied()) {
        assert!(aws(&["s3api", "head-bucket", "--bucket", b]).is_err(), "bucket {b} left");
    }
    let logs =
        aws(&["logs", "describe-log-groups", "--log-group-name-prefix", &format!("/aws/lambda/{function}")]).unwrap();
    assert_eq!(logs["logGroups"], serde_json::json!([]), "log group left");
    let alarms = aws(&["cloudwatch", "describe-alarms", "--alarm-name-prefix", &function]).unwrap();
    assert_eq!(alarms["MetricAlarms"], serde_json::json!([]), "alarms left");
}

/// Every bucket of the template, the second replica too, aborts incomplete uploads and expires noncurrent
/// versions (what gc deleted), or versioning keeps every byte forever. LocalStack's CloudFormation does not
/// apply lifecycle rules (a deployed bucket answers NoSuchLifecycleConfiguration), so the template is read.
#[test]
fn every_bucket_in_the_template_has_the_lifecycle_rules() {
    let template = std::fs::read_to_string(cairn_tests::workspace_root().join("infra/template.yaml")).unwrap();
    // Resources are the blocks that start at two spaces of indent.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in template.lines() {
        let top = line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':');
        if top {
            blocks.push((line.trim().trim_end_matches(':').to_string(), String::new()));
        } else if let Some((_, body)) = blocks.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let buckets: Vec<&(String, String)> =
        blocks.iter().filter(|(_, b)| b.contains("Type: AWS::S3::Bucket\n")).collect();
    assert_eq!(buckets.len(), 3, "data and two replica buckets: {:?}", blocks.iter().map(|b| &b.0).collect::<Vec<_>>());
    for (name, body) in buckets {
        for needed in [
            "Id: abort-incomplete-uploads",
            "AbortIncompleteMultipartUpload: { DaysAfterInitiation: 2 }",
            "Id: expire-noncurrent-versions",
            "NoncurrentVersionExpiration: { NoncurrentDays: 7 }",
        ] {
            assert!(body.contains(needed), "{name} lacks {needed:?}");
        }
        let policy = blocks.iter().find(|(n, _)| *n == format!("{name}Policy"));
        assert!(policy.is_some_and(|(_, b)| b.contains("aws:SecureTransport")), "{name} has no TLS-only policy");
    }
}

/// The statements of managed policy `arn` (its default version).
fn managed_statements(arn: &str) -> Vec<Value> {
    let pol = aws(&["iam", "get-policy", "--policy-arn", arn]).unwrap();
    let version = pol["Policy"]["DefaultVersionId"].as_str().unwrap().to_string();
    let doc = aws(&["iam", "get-policy-version", "--policy-arn", arn, "--version-id", &version]).unwrap();
    let doc = &doc["PolicyVersion"]["Document"];
    let doc: Value = if let Some(s) = doc.as_str() { serde_json::from_str(s).unwrap() } else { doc.clone() };
    doc["Statement"].as_array().unwrap().clone()
}

/// `--container-roles ecs`: the ECS task roles, trusted by ECS tasks of this account only, the server reading
/// (`<name>-read`), the ingest job writing (`<name>-ingest`). The stack alone, created fresh: LocalStack's
/// change sets cannot add a conditional resource to an existing stack (CloudFormation can).
#[test]
fn container_roles_attach_the_read_and_ingest_policies() {
    let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let template = workspace_root().join("infra/template.yaml");
    // `deploy` prints text, not JSON.
    let mut deploy = Command::new("aws");
    deploy.envs(env()).args([
        "cloudformation",
        "deploy",
        "--stack-name",
        &name,
        "--template-file",
        template.to_str().unwrap(),
        "--capabilities",
        "CAPABILITY_NAMED_IAM",
        "--parameter-overrides",
        &format!("Name={name}"),
        "ContainerRoles=ecs",
    ]);
    let deploy = deploy.output().unwrap();
    /// Deletes the stack however the test ends.
    struct Stack<'a>(&'a str);
    impl Drop for Stack<'_> {
        fn drop(&mut self) {
            let _ = aws(&["cloudformation", "delete-stack", "--stack-name", self.0]);
        }
    }
    let _stack = Stack(&name);
    assert!(deploy.status.success(), "deploy: {}", String::from_utf8_lossy(&deploy.stderr));
    let stack = aws(&["cloudformation", "describe-stacks", "--stack-name", &name]).unwrap();
    let outputs = stack["Stacks"][0]["Outputs"].as_array().unwrap().clone();
    let out =
        |k: &str| outputs.iter().find(|o| o["OutputKey"] == k).unwrap()["OutputValue"].as_str().unwrap().to_string();
    for (role, policy) in [("server-task", "ReadPolicyArn"), ("ingest-task", "IngestPolicyArn")] {
        let role = format!("{name}-{role}");
        let got = aws(&["iam", "get-role", "--role-name", &role]).unwrap();
        let trust = &got["Role"]["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(trust["Principal"]["Service"], "ecs-tasks.amazonaws.com", "{role}");
        assert!(trust["Condition"]["StringEquals"]["aws:SourceAccount"].is_string(), "{role}: {trust}");
        let attached = aws(&["iam", "list-attached-role-policies", "--role-name", &role]).unwrap();
        assert_eq!(attached["AttachedPolicies"].as_array().unwrap().len(), 1, "{role}: {attached}");
        assert_eq!(attached["AttachedPolicies"][0]["PolicyArn"], out(policy).as_str(), "{role}: {attached}");
    }
}
