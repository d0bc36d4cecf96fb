"""The `linear` strategy run through Mitogen, when Mitogen is installed.

Mitogen keeps one Python interpreter per host alive for the whole run and
sends it each module, instead of starting a fresh interpreter over SSH for
every task: a no-op site.yml takes about half the time (docs/benchmarks.md).
It still reaches hosts over SSH and runs the same modules.

Without the `mitogen` package (requirements-dev.txt installs it) this is
Ansible's own `linear` strategy, with a warning. To opt out, run with
ANSIBLE_STRATEGY=linear.
"""
from ansible.plugins.loader import strategy_loader
from ansible.utils.display import Display

try:
    import ansible_mitogen.loaders  # noqa: F401  (must load before the strategy)
    import ansible_mitogen.strategy
except ImportError:
    Display().warning("mitogen is not installed: using Ansible's plain linear strategy (slower). "
                      "pip install -r requirements-dev.txt to get it.")
    StrategyModule = strategy_loader.get("linear", class_only=True)
else:
    class StrategyModule(ansible_mitogen.strategy.StrategyMixin,
                         ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)):
        pass
