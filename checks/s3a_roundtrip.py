"""s3a workload, job 1: a Parquet dataset written to s3a:// through the S3A magic
committer and read back. Usage: s3a_roundtrip.py s3a://BUCKET/PATH"""

import json
import sys

from ocf_s3 import read_text, session
from pyspark.sql import functions as F

ROWS = 200_000
path = sys.argv[1]
spark = session("ociforge-s3a-roundtrip")
conf = spark.sparkContext.getConf()
print("S3A committer:", conf.get("spark.hadoop.fs.s3a.committer.name", "unset"),
      "protocol:", conf.get("spark.sql.sources.commitProtocolClass", "unset"))
df = spark.range(0, ROWS, numPartitions=4).withColumn("v", (F.col("id") * 7) % 1000)
df.write.mode("overwrite").parquet(path)

back = spark.read.parquet(path)
rows = back.count()
checksum = back.agg(F.sum("v")).first()[0]
expected = sum((i * 7) % 1000 for i in range(ROWS))
# S3A committers write _SUCCESS as a JSON manifest naming the committer (the classic
# FileOutputCommitter writes an empty file).
manifest = json.loads(read_text(spark, f"{path}/_SUCCESS"))
committer = manifest.get("committer")
print(f"S3A ROUNDTRIP rows={rows} checksum={checksum} expected={expected} "
      f"committer={committer} files={len(manifest.get('filenames', []))}")
spark.stop()
sys.exit(0 if (rows, checksum, committer) == (ROWS, expected, "magic") else 1)
