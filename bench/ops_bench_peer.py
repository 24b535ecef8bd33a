#!/usr/bin/python3
"""ops_bench's peer: Airflow's deferrable-operator model of waiting on
remote jobs, the triggerer. Each job is one asyncio coroutine that asks for
its state through aiohttp with a ClientSession of its own per call (as
HttpAsyncHook.run in airflow/providers/http/hooks/http.py does, under the
Livy provider's async hook), then sleeps the poll interval; the first polls are spread over one interval, as the jobs'
submissions spread baton's. Runs until SIGTERM.

Usage: ops_bench_peer.py URLS_FILE POLL_S GENIE_USER:PASSWORD
"""
import asyncio
import random
import signal
import sys

import aiohttp


async def watch(url, poll_s, auth):
    await asyncio.sleep(random.uniform(0, poll_s))
    while True:
        try:
            async with aiohttp.ClientSession(auth=auth) as s:
                async with s.get(url, headers={"X-Requested-By": "airflow"}) as r:
                    doc = await r.json(content_type=None)
                    state = doc.get("state") or doc.get("status")
            if state not in ("starting", "running", "INIT", "RUNNING", "ACCEPTED"):
                return
        except aiohttp.ClientError:
            pass  # a trigger logs and polls again
        await asyncio.sleep(poll_s)


async def main():
    urls = [u for u in open(sys.argv[1]).read().split() if u]
    poll_s = float(sys.argv[2])
    user, _, pwd = sys.argv[3].partition(":")
    genie = aiohttp.BasicAuth(user, pwd)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(watch(u, poll_s, genie if "/api/v3/" in u else None))
             for u in urls]
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


asyncio.run(main())
