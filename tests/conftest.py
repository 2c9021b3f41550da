"""Shared set-up: the quiet TensorFlow environment, before anything imports it."""

import os

for _key, _value in {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0",
                     "PYDEVD_DISABLE_FILE_VALIDATION": "1", "JUPYTER_PLATFORM_DIRS": "1"}.items():
    os.environ.setdefault(_key, _value)

import nnh  # noqa: E402,F401  (configures and imports TensorFlow once per worker)
