"""The simulated people of the demo and what each has done so far."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from tsunagu.demo.catalog import _CITIES, _EMAIL_DOMAINS, _PERSONA_WEIGHTS, _STORES, DAYS, JST


@dataclass(slots=True)
class _Person:
    index: int
    persona: str
    user_id: str
    traits: dict[str, Any]
    phone: str
    weight: float
    joined: dt.datetime
    is_new: bool
    store: tuple[str, str, str]
    web_id: str | None = None
    app_id: str | None = None
    app_os: str = "ios"
    line_id: str | None = None
    line_friend_at: dt.datetime | None = None
    line_link_at: dt.datetime | None = None
    email_optin: bool = False
    web_login_after: int = 0
    app_login_after: int = 0


@dataclass(slots=True)
class _State:
    """What a person has done so far, as the simulation walks through their sessions in time order."""

    web_sessions: int = 0
    app_sessions: int = 0
    web_login_at: int = 0  # which web session logs in (a person with fewer sessions logs in on the last)
    app_login_at: int = 0
    web_known: bool = False
    app_known: bool = False
    signed_up: bool = False
    store_member: bool = False
    line_linked: bool = False
    points: int = 0
    coupons: int = 0


@dataclass(slots=True)
class _Out:
    ts: dt.datetime
    channel: str
    payload: dict[str, Any]


@dataclass(slots=True)
class _Unit:
    """One session or touch: the events drop or stay together. ``critical`` units tie identities together
    (logins, sign-ups, LINE account links) and are never dropped when fitting the requested event count."""

    events: list[_Out] = field(default_factory=list)
    critical: bool = False


def _make_people(n: int, *, start: dt.datetime, end: dt.datetime, seed: int) -> list[_Person]:
    from faker import Faker

    fake = Faker("ja_JP")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    weights = [min(6.0, math.exp(rng.gauss(0, 0.8))) for _ in range(n)]
    mean = sum(weights) / n if n else 1.0
    ranks = sorted(range(n), key=lambda i: -weights[i])
    tier_of = {}
    for pos, i in enumerate(ranks):
        share = pos / max(1, n)
        tier_of[i] = "platinum" if share < 0.05 else "gold" if share < 0.2 else "silver" if share < 0.5 else "regular"
    personas = [name for name, _ in _PERSONA_WEIGHTS]
    persona_weights = [w for _, w in _PERSONA_WEIGHTS]
    emails: set[str] = set()
    phones: set[str] = set()
    people = []
    for i in range(n):
        persona = rng.choices(personas, persona_weights)[0]
        female = rng.random() < 0.55
        family, family_kana, family_roman = fake.last_name_pair()
        given, given_kana, given_roman = fake.first_name_female_pair() if female else fake.first_name_male_pair()
        store = rng.choice(_STORES)
        prefecture = store[2] if rng.random() < 0.8 else rng.choice(sorted(_CITIES))
        while True:
            phone = f"{rng.choice(('090', '080', '070'))}-{rng.randrange(10000):04d}-{rng.randrange(10000):04d}"
            if phone not in phones:
                phones.add(phone)
                break
        while True:
            email = f"{given_roman}.{family_roman}{rng.randrange(1, 1000)}@{rng.choice(_EMAIL_DOMAINS)}".lower()
            if email not in emails:
                emails.add(email)
                break
        is_new = rng.random() < 0.25
        joined = start + dt.timedelta(seconds=rng.random() * DAYS * 0.9 * 86400) if is_new else start
        member_since = (joined if is_new else start - dt.timedelta(days=rng.randrange(30, 3000))).astimezone(JST)
        birthday = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 56))
        traits: dict[str, Any] = {
            "lastName": family,
            "firstName": given,
            "lastNameKana": family_kana,
            "firstNameKana": given_kana,
            "phone": phone,
            "birthday": birthday.isoformat(),
            "gender": "female" if female else "male",
            "prefecture": prefecture,
            "city": rng.choice(_CITIES[prefecture]),
            "loyaltyTier": tier_of[i],
            "memberSince": member_since.date().isoformat(),
            "favoriteStore": store[1],
        }
        if persona != "store_only" or rng.random() < 0.3:
            traits["email"] = email
        person = _Person(
            index=i,
            persona=persona,
            user_id=f"TM{i + 1:07d}",
            traits=traits,
            phone=phone,
            weight=weights[i] / mean,
            joined=joined,
            is_new=is_new,
            store=store,
        )
        if persona in ("omni", "online", "visitor"):
            person.web_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            person.web_login_after = rng.choice((0, 1, 1, 2, 3))
        if persona in ("omni", "app_line") or persona == "online" and rng.random() < 0.4:
            person.app_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()
            person.app_os = "ios" if rng.random() < 0.65 else "android"
            person.app_login_after = rng.choice((0, 0, 1, 2))
        if persona in ("omni", "app_line") and rng.random() < 0.85 or persona == "online" and rng.random() < 0.2:
            person.line_id = "U" + f"{rng.getrandbits(128):032x}"
            span = (end - joined).total_seconds()
            before = not is_new and rng.random() < 0.6
            person.line_friend_at = (
                joined - dt.timedelta(days=30) if before else joined + dt.timedelta(seconds=rng.random() * span * 0.5)
            )
            if rng.random() < 0.6:
                person.line_link_at = person.line_friend_at + dt.timedelta(seconds=rng.random() * span * 0.4)
                person.line_link_at = max(person.line_link_at, joined + dt.timedelta(hours=1))
        person.email_optin = "email" in traits and rng.random() < 0.8
        people.append(person)
    return people
