"""The README's recipe for adding an app works as written.

It is what a developer does first in a forked project, and Django's own
`startapp` leaves two traps (the directory must exist; the app's name is
not its import path), so the steps are followed here, in a copy of the
project, and the copy must then pass Django's checks.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from django.apps import apps

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
# The project's package, whatever startproject named it.
PACKAGE = apps.get_app_config("accounts").name.rpartition(".")[0]


def readme_commands(heading):
    """The indented command block that follows the paragraph starting with
    `heading`, with the README's placeholders filled in."""
    text = (PROJECT_DIR / "README.md").read_text()
    after = text[text.index(heading):]
    block = re.search(r"\n\n((?:    \S.*\n)+)", after).group(1)
    return [line.strip().replace("<project>", PACKAGE) for line in block.splitlines()]


def run(argv, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def test_an_app_added_as_the_readme_says_loads(tmp_path):
    # What manage.py needs, not a developer's virtualenv or media beside it.
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT_DIR / "manage.py", project)
    for package in ("config", PACKAGE):
        shutil.copytree(PROJECT_DIR / package, project / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    commands = readme_commands("Add an app")
    assert commands == [f"mkdir {PACKAGE}/things", f"python manage.py startapp things {PACKAGE}/things"]
    for command in commands:
        argv = command.split()
        if argv[0] == "python":
            argv[0] = sys.executable
        result = run(argv, project)
        assert result.returncode == 0, f"{command}: {result.stderr}"

    app_dir = project / PACKAGE / "things"
    # The README's reason for editing apps.py: Django writes the bare name.
    apps_py, renamed = re.subn(
        r"""name = ["']things["']""", f'name = "{PACKAGE}.things"', (app_dir / "apps.py").read_text()
    )
    assert renamed == 1, "startapp no longer writes name = 'things'; update the README"
    (app_dir / "apps.py").write_text(apps_py)

    settings = project / "config" / "settings" / "base.py"
    listed = settings.read_text().replace(
        f'    "{PACKAGE}.health",\n', f'    "{PACKAGE}.health",\n    "{PACKAGE}.things",\n'
    )
    assert listed != settings.read_text()
    settings.write_text(listed)

    (app_dir / "views.py").write_text(
        "from rest_framework.response import Response\n"
        "from rest_framework.views import APIView\n\n\n"
        "class ThingsView(APIView):\n"
        "    def get(self, request):\n"
        "        return Response([])\n"
    )
    (app_dir / "urls.py").write_text(
        "from django.urls import path\n\n"
        "from .views import ThingsView\n\n"
        'urlpatterns = [path("things/", ThingsView.as_view(), name="things")]\n'
    )
    api_urls = project / PACKAGE / "api" / "urls.py"
    included = api_urls.read_text().replace(
        '    path("", include(accounts_urls)),\n',
        '    path("", include(accounts_urls)),\n    path("", include("' + PACKAGE + '.things.urls")),\n',
    )
    assert included != api_urls.read_text()
    api_urls.write_text(included)

    check = run([sys.executable, "manage.py", "check"], project)
    assert check.returncode == 0, check.stderr
    resolved = run(
        [sys.executable, "manage.py", "shell", "--verbosity=0", "-c",
         "from django.urls import resolve; print(resolve('/api/things/').url_name)"],
        project,
    )
    assert resolved.stdout.strip() == "things", resolved.stderr
