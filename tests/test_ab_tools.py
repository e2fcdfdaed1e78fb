"""tools/ab_bitwise.py: a build recorded twice compares equal, and a changed digest is caught."""
import json
import os
import subprocess
import sys

import convt_blas

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                    "ab_bitwise.py")
# The tool's process imports the build this test imported.
BUILD_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(convt_blas.__file__)))


def ab_bitwise(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [BUILD_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_record_is_deterministic_and_compare_catches_a_difference(tmp_path):
    first, second, doctored = (str(tmp_path / name) for name in ("a.json", "b.json", "c.json"))
    for path in (first, second):
        done = ab_bitwise("record", path, "--cases", "20", "--seed", "3", "--quiet")
        assert done.returncode == 0, done.stderr
    with open(first) as f:
        record = json.load(f)
    assert record["header"]["convt_blas_file"] == convt_blas.__file__
    assert len(record["cases"]) == 20

    same = ab_bitwise("compare", first, second)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "20 cases compared, 0 differ" in same.stdout

    record["cases"][7]["digest"] = "0" * 64
    with open(doctored, "w") as f:
        json.dump(record, f)
    changed = ab_bitwise("compare", first, doctored)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "20 cases compared, 1 differ" in changed.stdout
    assert "case 7:" in changed.stdout
