"""The five measurements of benchmarks/fairness.py, each printing and returning its figures."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from benchmarks.fairness_figures import (
    Latency,
    arrivals,
    mean_and_max,
    ratio_ceiling,
    share_ratio,
    wrk_delay_ms,
)
from benchmarks.fairness_rig import (
    Accounts,
    Api,
    Click,
    Deals,
    forged_token,
    person,
    post_raw,
    token_args,
    wrk,
)
from hotdeal_core.identity import TokenMinter

BIG = 1_000_000  # stock of a deal that never sells out in a run


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")


def _say(line: str) -> None:
    print(f"[fairness] {line}", flush=True)


def _latency_ms(clicks: list[Click]) -> dict[str, float]:
    """Latency figures of the clicks, plus how late the latest one left this client."""
    lat = Latency.of([1000 * c.seconds for c in clicks])
    return {**{k: round(v, 1) for k, v in asdict(lat).items()},
            "client_late_max": round(1000 * max(c.late for c in clicks), 1)}


def _wrk_figures(r: dict[str, Any]) -> dict[str, Any]:
    lat, e = r["latency_us"], r["errors"]
    seconds = r["duration_us"] / 1e6
    return {"requests": r["requests"], "seconds": round(seconds, 2), "rps": round(r["rps"], 1),
            "statuses": r["statuses"],
            "per_s": {k: round(v / seconds, 1) for k, v in r["statuses"].items()},
            "latency_ms": {k: round(lat[k] / 1000, 1) for k in ("mean", "p50", "p99", "max")},
            "timeouts": e["timeout"], "socket_errors": e["connect"] + e["read"] + e["write"],
            "command": r["command"]}


class Bench:
    def __init__(self, a: argparse.Namespace, api: Api, deals: Deals, minter: TokenMinter,
                 out: Path, tag: str) -> None:
        self.a, self.api, self.deals, self.minter, self.out, self.tag = \
            a, api, deals, minter, out, tag
        self.sql = deals.sql

    async def _settle(self, api: Api | None = None, deadline: float = 60.0) -> None:
        """Before a measurement: the previous one's outbox rows published and the API
        answering /readyz within 50 ms three times running (its queued work done)."""
        url, loop = (api or self.api).url, asyncio.get_running_loop()
        end, quick = loop.time() + deadline, 0
        async with httpx.AsyncClient(timeout=10) as client:
            while quick < 3 and loop.time() < end:
                (pending,) = (await self.sql.rows(
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL AND topic LIKE :p",
                    p=self.a.topic_prefix + "%"))[0]
                t = loop.time()
                try:
                    ok = (await client.get(f"{url}/readyz")).status_code == 200
                except httpx.HTTPError:
                    ok = False
                quick = quick + 1 if ok and not pending and loop.time() - t < 0.05 else 0
                await asyncio.sleep(0.2)

    async def _people(self, product: int, accounts: Accounts, at: list[float],
                      timeout: float) -> list[Click]:
        """Each account clicks once at its moment (seconds from now), concurrently."""
        t0 = asyncio.get_running_loop().time()
        return list(await asyncio.gather(*(
            person(self.api.url, product, user, {"Authorization": f"Bearer {tok}"},
                   self.a.body_user, t0 + when, timeout)
            for user, tok, when in zip(accounts.users, accounts.tokens, at, strict=True))))

    # ------------------------------------------------------------ a. fairness
    async def fairness(self) -> dict[str, Any]:
        a, runs = self.a, list[dict[str, Any]]()
        ceiling = ratio_ceiling(a.stock, a.scripts, a.people)
        for i in range(a.runs):
            tag = f"{self.tag}r{i}"
            bots = Accounts.mint(self.minter, f"{tag}-bot", a.scripts, self.out)
            people = Accounts.mint(self.minter, f"{tag}-hum", a.people, self.out)
            at = arrivals(a.people, a.earliest, a.latest, random.Random(a.seed + i))
            await self._settle()
            product = await self.deals.start(a.stock, 1, a.window)  # the opening
            seconds = math.ceil((a.window or 0) + a.script_seconds)
            scripts = asyncio.create_task(wrk(
                self.api.url, "tokens.lua", token_args(bots, product, a.threads, a.body_user),
                connections=a.script_connections, seconds=seconds, threads=a.threads))
            clicks = await self._people(product, people, at, (a.window or 0) + 30)
            flood = await scripts
            deal = await self.deals.deal_of(product)
            bot_units, people_units = await self.sql.units(deal, f"{tag}-bot-", f"{tag}-hum-")
            ratio = share_ratio(bot_units, people_units, a.scripts, a.people)
            run: dict[str, Any] = {"ratio": round(ratio, 3), "script_units": bot_units,
                   "people_units": people_units,
                   "people_statuses": dict(Counter(str(c.status) for c in clicks)),
                   "people_retries": sum(c.attempts - 1 for c in clicks),
                   "people_latency_ms": _latency_ms(clicks), "scripts": _wrk_figures(flood)}
            runs.append(run)
            _say(f"fairness run {i + 1}: scripts {bot_units} units, people {people_units}; "
                 f"ratio {ratio:.2f} (fair 1.00, ceiling {ceiling:.2f}); scripts "
                 f"{flood['rps']:,.0f} req/s; people {run['people_statuses']}, p95 "
                 f"{run['people_latency_ms']['p95']:,.0f} ms (latest click left "
                 f"{run['people_latency_ms']['client_late_max']:,.0f} ms late)")
        mean, worst = mean_and_max([r["ratio"] for r in runs])
        _say(f"fairness: ratio mean {mean:.2f}, max {worst:.2f} over {len(runs)} runs")
        return {"stock": a.stock, "script_accounts": a.scripts, "people_accounts": a.people,
                "ceiling": round(ceiling, 3), "ratio_mean": round(mean, 3),
                "ratio_max": round(worst, 3), "runs": runs}

    # ------------------------------------------------------------ b. auth
    async def auth(self) -> dict[str, Any]:
        n, tag = self.a.auth_requests, f"{self.tag}a"
        product = await self.deals.start(10 * n, 1)
        deal = await self.deals.deal_of(product)
        kinds = {"forged": forged_token, "expired": lambda u: self.minter.token(u, -600),
                 "none": None, "valid (control)": self.minter.token}
        out: dict[str, Any] = {}
        async with httpx.AsyncClient(timeout=30) as client:
            for i, (kind, make) in enumerate(kinds.items()):
                users = [f"{tag}{i}-{j}" for j in range(n)]

                async def one(user: str, make: Any = make) -> int:
                    headers = {"Authorization": f"Bearer {make(user)}"} if make else {}
                    body: dict[str, Any] = {"product_id": product, "quantity": 1}
                    if self.a.body_user:
                        body["user_id"] = user
                    resp = await client.post(f"{self.api.url}/orders", json=body,
                                             headers=headers)
                    return resp.status_code
                statuses = Counter(str(s) for s in await asyncio.gather(*map(one, users)))
                (rows,) = await self.sql.units(deal, f"{tag}{i}-")
                out[kind] = {"sent": n, "statuses": dict(statuses),
                             "accepted_202": statuses.get("202", 0), "orders_in_postgres": rows}
                _say(f"auth {kind}: {n} sent, {statuses.get('202', 0)} x 202, {rows} orders "
                     f"in Postgres; {dict(statuses)}")
        return out

    # ------------------------------------------------------------ c. identity on / off
    async def identity(self, off: Api, off_deals: Deals) -> dict[str, Any]:
        """Both sides --identity-rounds times in ABBA order (on, off, off, on, ...), so a
        drift of the shared machine's load weighs on both; the mean rate of each side."""
        a = self.a
        sides = {"on": (self.api, self.deals, a.body_user), "off": (off, off_deals, True)}
        order = [x for r in range(a.identity_rounds)
                 for x in (("on", "off") if r % 2 == 0 else ("off", "on"))]
        rounds: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
        for k, side in enumerate(order):
            api, deals, body_user = sides[side]
            figures = await self._identity_side(f"{self.tag}i{k}", api, deals, body_user)
            rounds[side].append(figures)
            o, s = figures["orders"], figures["sold_out"]
            _say(f"identity {side} ({api.name}): {o['per_s'].get('202', 0):,.0f} accepted/s "
                 f"(p99 {o['latency_ms']['p99']} ms), {s['per_s'].get('409', 0):,.0f} sold-out "
                 f"refusals/s (p99 {s['latency_ms']['p99']} ms); {o['statuses']} / "
                 f"{s['statuses']}")
        out: dict[str, Any] = {"order": order, "rounds": rounds}
        for target, code in (("orders", "202"), ("sold_out", "409")):
            mean = {side: sum(r[target]["per_s"].get(code, 0) for r in runs) / len(runs)
                    for side, runs in rounds.items()}
            out[f"{target}_per_s"] = {side: round(v, 1) for side, v in mean.items()}
            out[f"{target}_on_over_off"] = round(mean["on"] / mean["off"], 3) \
                if mean["off"] else None
        _say(f"identity (means of {a.identity_rounds}): accepted/s {out['orders_per_s']}, "
             f"x{out['orders_on_over_off']}; sold-out refusals/s {out['sold_out_per_s']}, "
             f"x{out['sold_out_on_over_off']}")
        return out

    async def _identity_side(self, tag: str, api: Api, deals: Deals,
                             body_user: bool) -> dict[str, Any]:
        a = self.a
        buyers = Accounts.mint(self.minter, f"{tag}-o", a.identity_tokens, self.out)
        refused = Accounts.mint(self.minter, f"{tag}-s", a.identity_tokens, self.out)
        await self._settle(api)
        big = await deals.start(BIG, 1)
        orders = await wrk(api.url, "tokens.lua", token_args(buyers, big, a.threads, body_user),
                           connections=a.connections, seconds=a.duration, threads=a.threads)
        one = await deals.start(1, 1)
        first = await person(api.url, one, f"{tag}-first", self.minter.header(f"{tag}-first"),
                             body_user, 0.0)
        if first.status != 202:
            raise RuntimeError(f"the sold-out deal's one unit answered {first.status}")
        await self._settle(api)
        sold_out = await wrk(api.url, "tokens.lua", token_args(refused, one, a.threads,
                                                                body_user),
                             connections=a.connections, seconds=a.duration, threads=a.threads)
        return {"api": api.name, "orders": _wrk_figures(orders),
                "sold_out": _wrk_figures(sold_out)}

    # ------------------------------------------------------------ d. people under a flood
    async def flood(self) -> dict[str, Any]:
        a, tag = self.a, f"{self.tag}f"
        product = await self.deals.start(BIG, 1)
        n = max(1, round(a.people_rate * a.flood_seconds))
        at = [0.2 + k / a.people_rate for k in range(n)]
        calm_people = Accounts.mint(self.minter, f"{tag}-calm", n, self.out)
        await self._settle()
        calm = await self._people(product, calm_people, at, 30)
        bots = Accounts.mint(self.minter, f"{tag}-bot", a.scripts, self.out)
        rate = a.flood_factor * a.people_rate
        pause = wrk_delay_ms(rate, a.flood_connections)
        scripts = asyncio.create_task(wrk(
            self.api.url, "tokens_paced.lua",
            [*token_args(bots, product, a.threads, a.body_user), str(pause)],
            connections=a.flood_connections, seconds=a.flood_seconds + 2, threads=a.threads))
        await asyncio.sleep(0.5)  # the flood running before the first person clicks
        flooded_people = Accounts.mint(self.minter, f"{tag}-flooded", n, self.out)
        flooded = await self._people(product, flooded_people, at, 30)
        flood = _wrk_figures(await scripts)
        calm_ms, flooded_ms = _latency_ms(calm), _latency_ms(flooded)
        ratio = flooded_ms["p95"] / calm_ms["p95"] if calm_ms["p95"] else None
        _say(f"flood: people p95 {calm_ms['p95']:,.0f} ms calm, {flooded_ms['p95']:,.0f} ms "
             f"under {flood['rps']:,.0f} script req/s (asked {rate:,.0f}); x{ratio or 0:.2f}")
        return {"people_rate": a.people_rate, "people_per_phase": n, "asked_flood_rate": rate,
                "calm": {"latency_ms": calm_ms,
                         "statuses": dict(Counter(str(c.status) for c in calm))},
                "flooded": {"latency_ms": flooded_ms,
                            "statuses": dict(Counter(str(c.status) for c in flooded))},
                "scripts": flood, "p95_flooded_over_calm": round(ratio, 3) if ratio else None}

    # ------------------------------------------------------------ e. the opening burst
    async def burst(self) -> dict[str, Any]:
        """wrk -c N (each request a new buyer, as the issue's figures), then N one-shot
        buyers (one connection, one request each, the connect counted: wrk starts its clock
        once connected, so a SYN the full listen queue dropped is not in its figures)."""
        a, out = self.a, {"wrk": dict[str, Any](), "one_shot": dict[str, Any]()}
        for n in (int(x) for x in a.burst.split(",") if x):
            tag = f"{self.tag}b{n}"
            buyers = Accounts.mint(self.minter, f"{tag}", max(2 * n, a.burst_tokens),
                                   self.out)
            await self._settle()
            product = await self.deals.start(BIG, 1, a.window)
            threads = 2 if n >= 2 else 1
            result = _wrk_figures(await wrk(
                self.api.url, "tokens.lua", token_args(buyers, product, threads, a.body_user),
                connections=n, seconds=a.burst_seconds, threads=threads,
                timeout=a.burst_timeout))
            lat = result["latency_ms"]
            # No answer at all is no figure, never a target met.
            result["target_met"] = result["requests"] > 0 and result["timeouts"] == 0 \
                and lat["p99"] <= 3 * lat["mean"]
            out["wrk"][str(n)] = result
            _say(f"burst wrk -c{n:,}: mean {lat['mean']:,.0f} ms, p50 {lat['p50']:,.0f}, "
                 f"p99 {lat['p99']:,.0f}, max {lat['max']:,.0f}; {result['timeouts']:,} "
                 f"timeouts, {result['socket_errors']:,} socket errors; {result['rps']:,.0f} "
                 f"req/s {result['statuses']}; target "
                 f"{'met' if result['target_met'] else 'NOT met'}")
            out["one_shot"][str(n)] = await self._one_shot(n)
        return out

    async def _one_shot(self, n: int) -> dict[str, Any]:
        a, loop = self.a, asyncio.get_running_loop()
        buyers = Accounts.mint(self.minter, f"{self.tag}o{n}", n, self.out)
        await self._settle()
        product = await self.deals.start(BIG, 1, a.window)

        async def one(user: str, token: str) -> tuple[str, float]:
            fields: dict[str, Any] = {"product_id": product, "quantity": 1}
            if a.body_user:
                fields["user_id"] = user
            start = loop.time()
            try:
                status, _ = await post_raw(self.api.url, "/orders", json.dumps(fields).encode(),
                                           {"Authorization": f"Bearer {token}"},
                                           a.burst_timeout)
            except TimeoutError:
                return "timeout", 0.0
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                return type(exc).__name__, 0.0
            return str(status), 1000 * (loop.time() - start)
        answers = await asyncio.gather(*map(one, buyers.users, buyers.tokens))
        outcomes = Counter(status for status, _ in answers)
        answered = [ms for status, ms in answers if status.isdigit()]
        result: dict[str, Any] = {"buyers": n, "outcomes": dict(outcomes),
                                  "timeouts": outcomes.get("timeout", 0)}
        if answered:
            lat = Latency.of(answered)
            result["latency_ms"] = {k: round(v, 1) for k, v in asdict(lat).items()}
            result["target_met"] = result["timeouts"] == 0 and lat.spread_ok()
            _say(f"burst one-shot {n:,} buyers: mean {lat.mean:,.0f} ms, p50 {lat.p50:,.0f}, "
                 f"p99 {lat.p99:,.0f}, max {lat.max:,.0f}; {dict(outcomes)}; target "
                 f"{'met' if result['target_met'] else 'NOT met'}")
        else:
            _say(f"burst one-shot {n:,} buyers: no answer; {dict(outcomes)}")
        return result
