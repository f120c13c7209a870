"""What Pod Security `restricted` does not check but a read-only image needs: a
read-only root filesystem, and an `emptyDir` over every path the image writes (else
the first write fails at run time, after admission let the pod in). The admission
rules themselves are Kubernetes' own code (tools/psa-check, tests/test_k8s_templates.py).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from .podtemplate import WrittenPath


def readonly_problems(manifest: dict[str, Any], written: list[WrittenPath]) -> list[str]:
    """One line per problem; none for a template the image can run under."""
    spec = manifest.get("spec") or {}
    empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
    problems = []
    for c in spec.get("containers") or []:
        name = c.get("name", "?")
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            problems.append(f"container {name!r}: readOnlyRootFilesystem is not true")
        mounted = [PurePosixPath(m["mountPath"]) for m in c.get("volumeMounts") or []
                   if m.get("name") in empty_dirs]
        for w in written:
            if not any(PurePosixPath(w.path).is_relative_to(m) for m in mounted):
                problems.append(f"container {name!r}: no emptyDir over {w.path} "
                                f"({', '.join(w.why)}), which the image writes")
    return problems
