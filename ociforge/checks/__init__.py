"""Checks for images: structure tests (container-structure-test), native checks on
tar headers, runtime smoke in containerd, GPU smoke. Declared in recipes per family
(image-name patterns), expanded to every image they match."""
