"""The Spark session the scripts of this folder compare Vitrine against."""


def local_spark():
    """Spark on this machine, one core, session time zone UTC, no web UI, errors only logged."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark
