# %% [markdown]
# # botify from Python: a world, a service, a day of listeners, a verdict
#
# A notebook-style script (`# %%` cells: VS Code, Jupyter's jupytext, or `python
# examples/notebook.py`). Pass a directory to work in; everything stays there.
#
#     python examples/notebook.py /tmp/botify-notebook [--small]

# %%
import sys
from pathlib import Path

import botify
from botify.analysis.verdict import headline_text, headlines
from botify.service.process import ServiceProcess
from botify.world import WorldSpec, generate_world

work = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/notebook")
small = "--small" in sys.argv  # a tiny world, for a quick run (the README test uses it)
world = work / "world"
generate_world(WorldSpec(tracks=600, users=400) if small else WorldSpec()).save(world)

# %% [markdown]
# Serve botify's embedded default experiment (C = random, T1 = sticky_artist) and send it a
# day of simulated listeners through the real HTTP API.

# %%
with ServiceProcess("--catalog", world / "tracks.json", "--log-dir", work / "log") as service:
    (day,) = botify.simulate(world, agent="remote", url=service.url, episodes=600 if small else 5000)
print(f"{day.sessions} sessions; mean time per session {day.time[0]:.3f} ± {day.time[1]:.3f}")

# %% [markdown]
# The verdict, as `botify analyze` prints it, and the events as columns for pandas or polars.

# %%
result = botify.analyze(work / "log", "STICKY_ARTIST")
for item in headlines(result, {"C": "random", "T1": "sticky_artist"}):
    print(headline_text(item))
events = botify.read_events(work / "log", "STICKY_ARTIST")
print(f"{len(events['user'])} events; next-events per treatment:",
      {name: int(((events["treatment"] == name) & (events["message"] == "next")).sum()) for name in ("C", "T1")})
try:
    import pandas

    print(pandas.DataFrame(events).groupby("treatment")["time"].mean())
except ImportError:
    print("(pip install pandas or polars to look at the events as a frame)")
