"""The Starlette application of ``llmpipe-tools ui``: pages, the JSON the page's script polls, and the static
files (ui.css, ui.js, and plotly.min.js read from the installed plotly package: no CDN, nothing vendored)."""
from __future__ import annotations

import functools
import hmac
from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from llmpipe.tools.ui import composer, detail, pages
from llmpipe.tools.ui.composeview import compose_page
from llmpipe.tools.ui.diffview import diff_page
from llmpipe.tools.ui.runs import Catalog

STATIC = Path(__file__).parent / "static"
COOKIE = "llmpipe_ui_token"


def plotly_js() -> Path | None:
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


class TokenGate(BaseHTTPMiddleware):
    """With a token: ``?token=`` once (then a cookie), the cookie, or ``Authorization: Bearer``; else 401."""

    def __init__(self, app, token: str):
        super().__init__(app)
        self.token = token

    def _ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def dispatch(self, request: Request, call_next):
        query = request.query_params.get("token")
        if self._ok(query):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            return response
        auth = request.headers.get("authorization", "")
        if self._ok(request.cookies.get(COOKIE)) or self._ok(auth[7:] if auth.lower().startswith("bearer ") else ""):
            return await call_next(request)
        return HTMLResponse(pages.layout("Token needed", "<h1>Token needed</h1><p>This page is protected: open the "
                                         "link that <code>llmpipe-tools ui</code> printed (it ends in "
                                         "<code>?token=…</code>).</p>"), status_code=401)


def build_app(roots: list[Path], token: str | None = None, hosts: list[str] | None = None) -> Starlette:
    """``hosts``: the Host headers accepted (a page on 127.0.0.1 answers only to local names, so a web page
    that rebinds its own DNS name to 127.0.0.1 cannot read it); None accepts any."""
    catalog = Catalog(roots)
    shown_roots = [str(r) for r in roots]

    @functools.lru_cache(maxsize=1)
    def recipe_names() -> tuple[str, ...]:
        return tuple(composer.recipe_names())

    async def runs(request: Request):
        return HTMLResponse(pages.runs_page(catalog.jobs(), shown_roots))

    def run(request: Request):
        job = catalog.job(request.path_params["key"])
        if job is None:
            return _not_found("No job at this address.")
        return HTMLResponse(pages.run_page(job, detail.snapshot(job), "/api/run/" + quote(job.key, safe="/")))

    def run_api(request: Request):
        job = catalog.job(request.path_params["key"])
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        snap = detail.snapshot(job)
        return JSONResponse({"status": job.status, "status_html": pages.badge(job.status),
                             "stages_html": pages.stages_fragment(snap["stages"], snap["edges"]),
                             "curves": snap["curves"]})

    def job_keys(s) -> dict[str, str]:
        """A sweep's job folders (as results.csv names them) -> their page addresses."""
        keys = {r.get("job_dir"): catalog.key_of(Path(r["job_dir"])) for r in s.rows if r.get("job_dir")}
        return {k: v for k, v in keys.items() if v}

    def mode_of(keys: dict[str, str]) -> str:
        """The jobs' run.objective_mode (min, max or auto): the sweep's own summary picks its best by it."""
        for key in keys.values():
            job = catalog.job(key)
            mode = (((job.lock or {}).get("config") or {}).get("run") or {}).get("objective_mode") if job else None
            if mode:
                return str(mode)
        return "auto"

    def sweeps(request: Request):
        found = catalog.sweeps()
        return HTMLResponse(pages.sweeps_page(found, [mode_of(job_keys(s)) for s in found]))

    def sweep(request: Request):
        s = catalog.sweep(request.path_params["key"])
        if s is None:
            return _not_found("No sweep at this address.")
        keys = job_keys(s)
        return HTMLResponse(pages.sweep_page(s, keys, mode_of(keys)))

    def diff(request: Request):
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        return HTMLResponse(diff_page(catalog.jobs(), catalog.job(a) if a else None, catalog.job(b) if b else None))

    def compose(request: Request):
        names = list(recipe_names())
        recipe = request.query_params.get("recipe", "demo" if "demo" in names else "")
        if recipe and recipe not in names:
            return _not_found(f"No recipe named {recipe!r}.")
        return HTMLResponse(compose_page(names, recipe or None, composer.form(recipe or None)))

    async def compose_api(request: Request):
        from starlette.concurrency import run_in_threadpool

        try:
            data = await request.json()
        except ValueError:
            return JSONResponse({"error": "expected JSON"}, status_code=400)
        recipe = data.get("recipe") or None
        if recipe and recipe not in recipe_names():
            return JSONResponse({"error": f"no recipe named {recipe!r}"}, status_code=400)
        overrides = {str(k): str(v) for k, v in (data.get("overrides") or {}).items()}
        result = await run_in_threadpool(composer.check, recipe, overrides)
        ok = not result["problems"]
        from llmpipe.tools.ui.graph import svg

        result["plan_html"] = svg(result["stages"], result["edges"], vertical=True) if ok else ""
        return JSONResponse(result)

    def static(request: Request):
        name = request.path_params["name"]
        if name == "plotly.min.js":
            path = plotly_js()
            if path is None:
                return Response("// plotly is not installed: pip install 'llmpipe[ui]'\n",
                                media_type="text/javascript")
            return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})
        path = STATIC / name
        if name not in {p.name for p in STATIC.iterdir()}:
            return Response("not found", status_code=404)
        return FileResponse(path)

    routes = [
        Route("/", runs), Route("/run/{key:path}", run), Route("/api/run/{key:path}", run_api),
        Route("/sweeps", sweeps), Route("/sweep/{key:path}", sweep), Route("/diff", diff),
        Route("/compose", compose), Route("/api/compose", compose_api, methods=["POST"]),
        Route("/static/{name}", static), Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts)] if hosts else []
    middleware += [Middleware(TokenGate, token=token)] if token else []
    return Starlette(routes=routes, middleware=middleware)


def _not_found(message: str) -> HTMLResponse:
    return HTMLResponse(pages.layout("Not found", f"<h1>Not found</h1><p>{pages.e(message)}</p>"), status_code=404)
