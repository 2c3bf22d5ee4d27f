package cairn.spark;

import org.apache.spark.sql.api.java.UDF2;

/** Spark SQL UDF (binary key, shard count) -> shard; null for a null key (the writer reports it). */
public final class ShardOfBinary implements UDF2<byte[], Integer, Integer> {
    private static final long serialVersionUID = 1L;

    @Override
    public Integer call(byte[] key, Integer shards) {
        return key == null ? null : Placement.shardOf(key, shards);
    }
}
