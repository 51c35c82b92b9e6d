import logging
import os

from simulations.runner import quiet_simulation_logs


def test_quiet_simulation_logs_puts_the_logger_and_environment_back(monkeypatch):
    monkeypatch.delenv("FLWR_LOG_LEVEL", raising=False)
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
    logger = logging.getLogger("flwr")
    before = logger.level
    with quiet_simulation_logs():
        assert os.environ["FLWR_LOG_LEVEL"] == "ERROR"  # Ray workers inherit it
        assert os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] == "1"  # the user's setting
        assert logger.level == logging.WARNING
    # Processes started afterwards (a SuperLink, a later run) log as before.
    assert "FLWR_LOG_LEVEL" not in os.environ
    assert os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] == "1"
    assert logger.level == before and not logger.filters
