"""Safety checks for everything a visitor uploads: limits, pre-flight and isolation.

* :mod:`~saliency_core.safety.limits`: every limit, operator-configurable;
* :mod:`~saliency_core.safety.keras_archive`: ``.keras`` pre-flight (zip, config, allowlist);
* :mod:`~saliency_core.safety.hdf5`: bounded walk of an HDF5 file's structure;
* :mod:`~saliency_core.safety.images`: bounded frame/page/chunk counting for images;
* :mod:`~saliency_core.safety.isolation`: the child process with a memory limit and timeouts;
* :mod:`~saliency_core.safety.weights`: weights uploads for registered models.

Nothing here imports TensorFlow or Streamlit at module level.
"""

from saliency_core.safety.errors import UnsafeUploadError
from saliency_core.safety.limits import Limits, load_limits

__all__ = ["Limits", "UnsafeUploadError", "load_limits"]
