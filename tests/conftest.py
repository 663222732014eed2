import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run where torch sees a CUDA device (runs/gpu_check.sh runs them alone) and are skipped
    elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (runs/gpu_check.sh)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
