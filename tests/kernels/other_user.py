"""Running a command as another user (uid 65534) in tests: needs root and setpriv."""
import os
import shutil
import subprocess
import sys

OTHER = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def can_switch_uid() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run([*OTHER, sys.executable, "-c", "import os; print(os.geteuid())"], check=False,
                           capture_output=True, text=True, timeout=60)
    return probe.returncode == 0 and probe.stdout.strip() == "65534"
