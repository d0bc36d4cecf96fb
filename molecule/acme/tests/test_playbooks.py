"""Check mode on the converged host (molecule/_shared/playbook_checks.py)."""
from playbook_checks import test_check_mode_on_converged_hosts_changes_nothing  # noqa: F401
