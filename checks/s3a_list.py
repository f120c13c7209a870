"""s3a workload, job 2: lists the dataset job 1 wrote (a new application, so nothing
is cached from the writer). Usage: s3a_list.py s3a://BUCKET/PATH"""

import sys

from ocf_s3 import session

path = sys.argv[1]
spark = session("ociforge-s3a-list")
jvm = spark._jvm
root = jvm.org.apache.hadoop.fs.Path(path)
fs = root.getFileSystem(spark._jsc.hadoopConfiguration())
files = fs.listFiles(root, True)
names, size = [], 0
while files.hasNext():
    status = files.next()
    names.append(status.getPath().getName())
    size += status.getLen()
parquet = sorted(n for n in names if n.endswith(".parquet"))
# Nothing left of the magic committer's staging area (__magic*) after the job commit.
magic = [n for n in names if "__magic" in n or n.endswith((".pending", ".pendingset"))]
print(f"S3A LIST parquet_files={len(parquet)} success={'_SUCCESS' in names} "
      f"magic_leftovers={len(magic)} bytes={size}")
spark.stop()
sys.exit(0 if parquet and "_SUCCESS" in names and not magic else 1)
