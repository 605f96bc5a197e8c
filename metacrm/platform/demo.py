"""The demo tenant: `demo` with admin@demo and the crm-core pack installed with its seed."""

from __future__ import annotations

import secrets

from metacrm.errors import NotFound
from metacrm.metadata.packs import examples_dir, load_path
from metacrm.platform.state import AppState
from metacrm.platform.tenancy import create_tenant, create_user, get_tenant
from metacrm.runtime import packs

DEMO_TENANT = "demo"
DEMO_ADMIN = "admin@demo"


def _demo_password(state: AppState) -> tuple[str, bool]:
    """The demo password: the setting, else one generated once and kept in data_dir."""
    if state.settings.demo_password:
        return state.settings.demo_password, False
    path = state.settings.data_dir / "demo-password.txt"
    if path.exists():
        return path.read_text().strip(), True
    password = secrets.token_urlsafe(12)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password, True


async def ensure_demo(state: AppState) -> None:
    """Create the demo tenant once; print how to log in every time."""
    password, generated = _demo_password(state)
    try:
        await get_tenant(state.db, DEMO_TENANT)
    except NotFound:
        tenant = await create_tenant(state.db, DEMO_TENANT, label="Demo Company")
        admin_id = await create_user(
            state.db, tenant, DEMO_ADMIN, password, full_name="Demo Admin", is_admin=True
        )
        await packs.install(
            lambda: state.db.tenant(tenant.storage),
            load_path(examples_dir() / "crm-core"),
            author_id=admin_id,
        )
    where = (
        f"in {state.settings.data_dir / 'demo-password.txt'}"
        if generated
        else "from METACRM_DEMO_PASSWORD"
    )
    print(
        "\n  metacrm demo is ready.\n"
        f"  Log in as {DEMO_ADMIN} (tenant {DEMO_TENANT}) with password {password}  (kept {where})\n"
        f"  curl -s -X POST http://{state.settings.host}:{state.settings.port}/api/v1/auth/token "
        f"-d tenant={DEMO_TENANT} -d username={DEMO_ADMIN} -d password='{password}'\n",
        flush=True,
    )
