"""The README says what the product does: its commands, its settings, its answers."""

import json
import re
from pathlib import Path

from dashboard import config, migrate

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_two_commands_are_there_exactly():
    assert "pip install . && zapi-dashboard serve\n" in README
    assert "pip install -e '.[test]' && pytest\n" in README


def test_the_health_check_example_is_what_it_answers(client):
    (example,) = re.findall(r'^\{"status": "ok".*\}$', README, flags=re.MULTILINE)
    shown = json.loads(example)
    answer = client.get("/healthz").get_json()
    assert set(shown) == set(answer)
    assert shown["schemaVersion"] == answer["schemaVersion"] == migrate.head_revision()


def test_the_configuration_table_lists_every_setting_and_no_other():
    table = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `DASHBOARD_([A-Z_]+)` \|", table, flags=re.MULTILINE))
    assert documented == set(config.SETTINGS)
