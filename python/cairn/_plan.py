"""What a DataFrame's query plan says about its size, read through py4j without running a job."""

# A figure above this is Spark's "unknown" (about Long.MaxValue, or a fraction of it after a projection).
_UNKNOWN = 1 << 50


def file_bytes(df):
    """The size of the files ``df`` reads, when it is a plain read of listed files (a file relation with
    no catalog table, under nothing but projections that keep every one of its columns, renamed or
    reordered): Spark's own figure for the plan, the files' stored size, from the listing it already
    holds, so without a job. None otherwise: a filter, a limit, a join or a computed column makes the
    files' size no measure of the rows; a projection that drops columns is scaled by Spark with each
    type's default size, not the real one; a catalog table's figure may be its (stale) statistics."""
    try:
        plan = df._jdf.queryExecution().optimizedPlan()
        node = plan
        while node.getClass().getSimpleName() == "Project":
            exprs = node.projectList()
            if not all(_bare_column(exprs.apply(i)) for i in range(exprs.size())):
                return None
            node = node.child()
            if exprs.size() != node.output().size():
                return None
        if node.getClass().getSimpleName() != "LogicalRelation" or node.catalogTable().isDefined():
            return None
        relation = node.relation()
        if (relation.getClass().getSimpleName() != "HadoopFsRelation"
                or relation.location().getClass().getSimpleName() != "InMemoryFileIndex"):
            return None
        size = _integer(plan.stats().sizeInBytes())
        return size if 0 < size < _UNKNOWN else None
    except Exception:  # Spark Connect, or another plan API: size it with the pass
        return None


def estimated_bytes(df):
    """Spark's own estimate of the input's size (file sizes for files), without running anything; None when
    it has none."""
    try:
        size = _integer(df._jdf.queryExecution().optimizedPlan().stats().sizeInBytes())
    except Exception:  # Spark Connect, or another plan API
        return None
    return size if 0 <= size < _UNKNOWN else None


def _integer(big):
    """A Scala BigInt from py4j: a Python int already (py4j converts it), or an object to print."""
    return big if isinstance(big, int) else int(big.toString())


def _bare_column(expr):
    """A column as it is, renamed or not (no expression that could change its size)."""
    if expr.getClass().getSimpleName() == "Alias":
        expr = expr.child()
    return expr.getClass().getSimpleName() == "AttributeReference"
