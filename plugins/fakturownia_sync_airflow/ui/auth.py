"""Who may see the page and who may act on it, decided by Airflow's own auth manager.

A plugin's FastAPI app is mounted beside Airflow's routers and inherits none of their checks, so every page
route depends on `PAGE_ACCESS` (the "Plugins" view: any logged-in user the auth manager lets see plugins).
An action changes what the next run of a DAG does (a quarantined record retried, a review decision applied),
so it needs the right to trigger that DAG's runs: the same right as the Trigger button, no more.

The user comes from the `Authorization: Bearer` header or the UI's `_token` cookie. That cookie is
SameSite=Lax, so another site's form cannot post with it; actions also refuse what a browser marks as sent
from elsewhere, in case it sends the cookie anyway (a sibling subdomain is the same "site" to SameSite): a
`Sec-Fetch-Site` other than same-origin or none (typed by the user), or an `Origin` naming another host. An
`Origin` of "null" alone proves nothing either way (a same-origin post under a no-referrer policy sends it,
and so does another site's sandboxed frame); `Sec-Fetch-Site` tells the two apart.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_access_view
from fastapi import Depends, HTTPException, Request, status

PAGE_ACCESS = Depends(requires_access_view(AccessView.PLUGINS))


# What a browser says of where a request comes from (Fetch Metadata): only these are this page's own posts.
OWN_FETCH_SITES = ("same-origin", "none")


def same_origin(request: Request) -> None:
    """Refuse a post from another site or origin, by what the browser says of it: `Sec-Fetch-Site` where it is
    sent (every current browser), else an `Origin` that must name this host (which a proxy that rewrites `Host`
    would break). A client that is not a browser sends neither and is judged by its credentials alone."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:  # no page can set it: the browser's own word, whatever proxy rewrote `Host`
        if fetch_site not in OWN_FETCH_SITES:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Cross-site request refused")
        return
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Cross-site request refused")


def require_run_access(request: Request, user: BaseUser, dag_id: str) -> None:
    """403 unless the user may trigger runs of `dag_id` (the auth manager's rule for the Trigger button)."""
    requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=dag_id)(request, user)


def acting_user(request: Request, user: GetUserDep) -> BaseUser:
    """The logged-in user of an action, after the same-origin check; the route then checks the DAG."""
    same_origin(request)
    return user


def user_name(user: BaseUser) -> str:
    """The name stored with a decision (who asked for it): the auth manager's name for the user."""
    return user.get_name() or user.get_id()
