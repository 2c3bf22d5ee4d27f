//! `INFO` as people read it: redis-cli's INFO style, `# Section` headers and `field:value` lines, with a
//! `<field>_human` line beside every byte count. Rendered from the JSON document the API returns
//! (`GET /v1/keyspaces/{ks}`), walking it generically so a field the server adds shows up here unchanged.

use serde_json::Value;

/// The report of an info document.
pub fn render(info: &Value) -> String {
    let mut out = String::new();
    let Some(top) = info.as_object() else { return format!("{info}\n") };
    section(&mut out, "Keyspace");
    // The fields people look for first, then whatever else the document holds.
    const FIRST: [&str; 8] = ["keyspace", "version", "created_at", "keys", "bytes", "shards", "placement", "replicas"];
    for k in FIRST {
        if let Some(v) = top.get(k) {
            field(&mut out, k, v);
        }
    }
    for (k, v) in top {
        if !FIRST.contains(&k.as_str()) && !matches!(k.as_str(), "failover" | "cache" | "layers") {
            field(&mut out, k, v);
        }
    }
    if let Some(Value::Array(layers)) = top.get("layers") {
        // Newest first: layer0 is the version's own.
        section(&mut out, "Layers");
        line(&mut out, "layers", &layers.len().to_string());
        for (i, layer) in layers.iter().enumerate() {
            for (k, v) in layer.as_object().into_iter().flatten() {
                field(&mut out, &format!("layer{i}_{k}"), v);
            }
        }
    }
    section(&mut out, "Replication");
    match top.get("failover") {
        Some(Value::Object(f)) => {
            line(&mut out, "replicated", "yes");
            for (k, v) in f {
                field(&mut out, k, v);
            }
        }
        _ => line(&mut out, "replicated", "no"),
    }
    if let Some(Value::Object(c)) = top.get("cache") {
        section(&mut out, "Cache");
        for (k, v) in c {
            match (k.as_str(), v) {
                // One line group per cache, named by the cache.
                ("caches", Value::Array(caches)) => {
                    for cache in caches {
                        let name = cache.get("name").and_then(Value::as_str).unwrap_or("cache");
                        for (ck, cv) in cache.as_object().into_iter().flatten().filter(|(ck, _)| *ck != "name") {
                            field(&mut out, &format!("{name}_{ck}"), cv);
                        }
                        hit_rate(&mut out, name, cache);
                    }
                }
                _ => field(&mut out, k, v),
            }
        }
    }
    out
}

fn section(out: &mut String, name: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!("# {name}\n"));
}

fn line(out: &mut String, k: &str, v: &str) {
    out.push_str(&format!("{k}:{v}\n"));
}

/// A field; objects flatten to `parent_child`, arrays to comma-separated values.
fn field(out: &mut String, k: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for (ck, cv) in m {
                field(out, &format!("{k}_{ck}"), cv);
            }
        }
        Value::Array(items) => {
            let list: Vec<String> = items.iter().map(scalar).collect();
            line(out, k, &list.join(","));
        }
        v => {
            line(out, k, &scalar(v));
            if let Some(n) = v.as_u64()
                && (k == "bytes" || k.ends_with("_bytes") || k == "bytes_fetched")
            {
                line(out, &format!("{}_human", k.trim_end_matches("_bytes")), &human(n));
            }
        }
    }
}

fn hit_rate(out: &mut String, name: &str, cache: &Value) {
    let (Some(h), Some(m)) = (cache.get("hits").and_then(Value::as_u64), cache.get("misses").and_then(Value::as_u64))
    else {
        return;
    };
    if h + m > 0 {
        line(out, &format!("{name}_hit_rate"), &format!("{:.2}%", h as f64 * 100.0 / (h + m) as f64));
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// Bytes the way redis-cli's INFO shows them: `812B`, `1.18K`, `54.20M`, `2.00G`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_redis() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(1210), "1.18K");
        assert_eq!(human(56_832_819), "54.20M");
        assert_eq!(human(2 << 30), "2.00G");
    }

    #[test]
    fn a_document_becomes_sections_of_fields() {
        let info = serde_json::json!({
            "keyspace": "default", "version": "v1", "keys": 10000, "bytes": 1210,
            "placement": {"algorithm": "jump", "shards": 20}, "replicas": ["s3://r/x"],
            "failover": null,
            "cache": {"store": "file:///s", "object_gets": 3, "bytes_fetched": 2048,
                      "caches": [{"name": "metadata", "hits": 3, "misses": 1, "bytes": 100, "capacity_bytes": 1024}]}
        });
        let text = render(&info);
        for expected in [
            "# Keyspace\nkeyspace:default\nversion:v1\nkeys:10000\n",
            "bytes:1210\nbytes_human:1.18K\n",
            "placement_algorithm:jump\n",
            "replicas:s3://r/x\n",
            "\n# Replication\nreplicated:no\n",
            "\n# Cache\n",
            "bytes_fetched:2048\nbytes_fetched_human:2.00K\n",
            "metadata_capacity_bytes:1024\nmetadata_capacity_human:1.00K\n",
            "metadata_hit_rate:75.00%\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        assert!(!text.contains('{'), "{text}");
    }
}
