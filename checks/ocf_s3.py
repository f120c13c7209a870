"""S3A settings for the workload jobs, from the environment `ociforge test` hands
over (the check set's `host_env`): the endpoint, path-style addressing, the region.
Access keys are not set here: S3A reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
from the environment itself (its default credential chain)."""

import os


def s3a_conf() -> dict[str, str]:
    return {
        "spark.hadoop.fs.s3a.endpoint": os.environ["OCIFORGE_S3_ENDPOINT"],
        "spark.hadoop.fs.s3a.endpoint.region": os.environ.get("AWS_REGION", "us-east-1"),
        "spark.hadoop.fs.s3a.path.style.access": "true",
        # Leave directory markers (Hadoop 3.4's default): 3.3's deletion of the parent
        # markers after each write retries forever on stores that keep directories
        # (an S3 gateway over a filesystem refuses to delete a non-empty one).
        "spark.hadoop.fs.s3a.directory.marker.retention": "keep",
        # Keys from the environment only: no instance-metadata lookup (last in the
        # default chain). The SDK v1 class name; Hadoop 3.4 maps it to its v2 twin.
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "com.amazonaws.auth.EnvironmentVariableCredentialsProvider",
    }


def session(name: str):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(name).config("spark.ui.enabled", "false")
    for key, value in s3a_conf().items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def read_text(spark, path: str) -> str:
    """A small file's content through Hadoop's FileSystem API (what S3A sees)."""
    jvm = spark._jvm
    p = jvm.org.apache.hadoop.fs.Path(path)
    fs = p.getFileSystem(spark._jsc.hadoopConfiguration())
    stream = fs.open(p)
    try:
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()
