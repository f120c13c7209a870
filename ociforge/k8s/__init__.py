"""Kubernetes: pod templates for Spark's `spark.kubernetes.*.podTemplateFile` that pass
Pod Security `restricted` (`podtemplate`), the checks ociforge adds to the admission
rules (`checks`), and the same security context as `ctr run` options (`ctr`)."""

from .podtemplate import ROLES, PodTemplate, pod_template, written_paths

__all__ = ["ROLES", "PodTemplate", "pod_template", "written_paths"]
