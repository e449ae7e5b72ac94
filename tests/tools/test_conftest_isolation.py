"""The conftest fixtures keep tests independent of the order they run in."""
from __future__ import annotations

from mmengine.logging import MMLogger

_NAME = 'cim_mm_isolation_probe'


def test_logger_made_under_capsys(capsys):
    logger = MMLogger.get_instance(_NAME, log_level='INFO')
    logger.info('first test')
    assert 'first test' in capsys.readouterr().out


def test_same_logger_name_in_a_later_test_logs_cleanly(capsys):
    # Without the fixture this would return the first test's logger, whose
    # handler writes to that test's closed capture: "--- Logging error ---".
    assert _NAME not in MMLogger._instance_dict
    logger = MMLogger.get_instance(_NAME, log_level='INFO')
    logger.info('second test')
    captured = capsys.readouterr()
    assert 'second test' in captured.out
    assert 'Logging error' not in captured.err
