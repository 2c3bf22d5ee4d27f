package cairn.spark;

import org.apache.spark.sql.api.java.UDF2;

/** Spark SQL UDF (string key, shard count) -> shard; null for a null key (the writer reports it). */
public final class ShardOfString implements UDF2<String, Integer, Integer> {
    private static final long serialVersionUID = 1L;

    @Override
    public Integer call(String key, Integer shards) {
        return key == null ? null : Placement.shardOf(key, shards);
    }
}
