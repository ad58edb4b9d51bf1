"""What Portolan keeps on disk (secret key, login database, generated admin
password) is readable by its owner only, and a chosen admin password meets
the password rules."""

from __future__ import annotations

import os
import stat
import subprocess
import sys


def manage(repo_root, var_dir, *args, **env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("SECRET_KEY", "PORTOLAN_ADMIN_PASSWORD", "DATABASE_PATH")}
    full.update(PORTOLAN_VAR_DIR=str(var_dir), **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=repo_root,
                          env=full, capture_output=True, text=True, timeout=120)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_var_files_are_private_and_the_admin_password_is_not_printed(
        tmp_path, repo_root):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    os.chmod(var, 0o755)  # noqa: S103 - as an older install left it
    assert manage(repo_root, var, "migrate", "--noinput", "-v", "0").returncode == 0
    out = manage(repo_root, var, "ensureadmin")
    assert out.returncode == 0, out.stderr
    password_file = var / "admin_password"
    password = password_file.read_text().strip()
    assert password and password not in out.stdout + out.stderr
    assert str(password_file) in out.stdout
    assert mode(var) == 0o700
    assert mode(var / "secret_key") == 0o600
    assert mode(password_file) == 0o600
    # The login database (session keys) sits in the private directory.
    assert (var / "portolan.sqlite3").exists()


def test_a_weak_chosen_admin_password_is_refused(tmp_path, repo_root):
    var = tmp_path / "var"
    assert manage(repo_root, var, "migrate", "--noinput", "-v", "0").returncode == 0
    weak = manage(repo_root, var, "ensureadmin", PORTOLAN_ADMIN_PASSWORD="admin")
    assert weak.returncode != 0 and "too weak" in weak.stderr
    strong = manage(repo_root, var, "ensureadmin",
                    PORTOLAN_ADMIN_PASSWORD="long-enough-pass-7")
    assert strong.returncode == 0, strong.stderr
    assert not (var / "admin_password").exists()
    # An install that already has its login keeps starting with a weak one.
    again = manage(repo_root, var, "ensureadmin", PORTOLAN_ADMIN_PASSWORD="admin")
    assert again.returncode == 0 and "keeps its password" in again.stderr


def test_settings_load_where_var_cannot_be_made_private(tmp_path, repo_root):
    """A var directory the process may not chmod (a shared volume) is
    reported, not fatal."""
    code = ("import os\n"
            "def deny(*args, **kwargs):\n"
            "    raise PermissionError(1, 'Operation not permitted')\n"
            "os.chmod = deny\n"
            "import webapp.settings as s; print(s.SECRET_KEY[:4])")
    var = tmp_path / "var"
    var.mkdir()
    os.chmod(var, 0o750)  # noqa: S103 - group-shared, as a volume may be
    full = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    full.update(PORTOLAN_VAR_DIR=str(var))
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, env=full,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "cannot make" in out.stderr
