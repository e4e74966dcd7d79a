"""Data layer of tvrec: dataset contract, adapters, synthetic world and feature builders."""

import os
import warnings

# Nothing downloads at run time: no Feast usage telemetry, no model-hub calls.
os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# ibis (inside Feast's DuckDB store) calls a DuckDB API that DuckDB 2 deprecates; harmless.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis\..*")
