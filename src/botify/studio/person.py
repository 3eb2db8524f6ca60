"""A person as a recommender: the course's exercise where people answer simulated listeners.

`Person` is an ordinary service recommender (`kind = "botify.studio:Person"` in an experiments
file), so the service routes, records and logs its requests like any treatment's. Its answer is
a question put on the studio's `Desk`: the request waits there, shown on the Recommend page,
until a person picks a track or `timeout` seconds pass; then it returns None and the treatment's
`fallback` answers (the event log names who did). Without a studio in the process (plain
`botify serve`) nobody can answer, so it returns None at once; so it does for people listening
on the studio's Listen page (their page would hang on another person).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from botify.service.models import PEOPLE_FIRST
from botify.service.recommenders import Query, Recommender
from botify.sim.remote import STUDIO_WAIT


class PersonParams(BaseModel):
    """`params` of a Person treatment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(30.0, gt=0, le=STUDIO_WAIT - 30,
                           description="seconds a request waits for a person before the fallback answers")


@dataclass
class Question:
    """A `/next` request waiting for a person."""

    id: int
    query: Query
    asked: float
    deadline: float
    answer: asyncio.Future = field(repr=False)


class Desk:
    """The requests waiting for a person in this process (one studio per process)."""

    _current: Desk | None = None

    def __init__(self) -> None:
        self.waiting: dict[int, Question] = {}
        self.answered = 0
        self.timed_out = 0
        self._ids = itertools.count(1)

    @classmethod
    def current(cls) -> Desk | None:
        return cls._current

    def open(self) -> None:
        Desk._current = self

    def close(self) -> None:
        """Take no more questions, and hand those waiting to their fallback now."""
        if Desk._current is self:
            Desk._current = None
        for question in self.waiting.values():
            if not question.answer.done():
                question.answer.set_result(None)

    async def ask(self, query: Query, timeout: float) -> int | None:
        """Wait for a person's track for `query`; None when the time is up."""
        now = time.monotonic()
        question = Question(next(self._ids), query, now, now + timeout, asyncio.get_running_loop().create_future())
        self.waiting[question.id] = question
        try:
            return await asyncio.wait_for(asyncio.shield(question.answer), timeout)
        except asyncio.TimeoutError:
            self.timed_out += 1
            return None
        finally:
            self.waiting.pop(question.id, None)

    def answer(self, question_id: int, track: int) -> bool:
        """Give a waiting request its track; False if it is no longer waiting."""
        question = self.waiting.pop(question_id, None)
        if question is None or question.answer.done():
            return False
        question.answer.set_result(track)
        self.answered += 1
        return True


class Person(Recommender):
    """Whatever track a person picks on the studio's Recommend page, within `params.timeout`."""

    Params = PersonParams

    @property
    def name(self) -> str:
        return "person"

    async def recommend(self, query: Query) -> int | None:
        desk = Desk.current()
        if desk is None or query.user >= PEOPLE_FIRST:  # people listening are not kept waiting for people
            return None
        return await desk.ask(query, self.params.timeout)
