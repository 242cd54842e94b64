"""The benchmark's named variants and the settings it can vary, apart from the benchmark itself, so that
the command line can list them without importing torch."""

from types import MappingProxyType

NAMED_VARIANTS = MappingProxyType(
    {
        "off": MappingProxyType({"mode": "off"}),  # no consistent attention: the baseline
        "uniform": MappingProxyType({"consistency": "uniform"}),  # the paper's sampling
        "subject": MappingProxyType({"consistency": "subject"}),  # only subject tokens shared
    }
)
DEFAULT_VARIANTS = ("off", "uniform", "subject")
VARIED_SETTINGS = ("sampling_rate", "window", "id_images", "first_consistent_step", "subject_threshold", "mode")
