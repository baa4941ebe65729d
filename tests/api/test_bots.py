"""The demo bots: the maker's ladder and the taker's orders as pure functions, then both
loops driving the client against a stand-in gateway over loopback."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal as D

import msgspec
import pytest
import pytest_asyncio
from client_fake_gateway import NETWORK, FakeGateway

from api.bots import BotMarket, bot_coroutines, bot_markets
from api.bots.market_maker import MakerParams, MarketMaker, Quote, moved, quotes
from api.bots.noise_taker import NoiseTaker, TakerParams, next_order
from api.client import Client, ClientConfig
from engine.spec import MarketSpec

NVDA_MAKER = MakerParams("NVDA", D("0.01"), D("0.001"), quote_usd=D(1_000), max_position_usd=D(10_000))
NVDA_TAKER = TakerParams("NVDA", D("0.001"), order_usd=D(300), max_position_usd=D(10_000), mean_interval_s=0.01)


def test_params_defaults_are_locked():
    assert msgspec.to_builtins(MakerParams("X", D("0.01"), D("0.001"))) == {
        "market": "X", "tick_size": "0.01", "lot_size": "0.001", "quote_usd": "1000", "max_position_usd": "20000",
        "levels": 3, "half_spread_bps": "10", "level_step_bps": "10", "max_skew_bps": "20", "dark_widen": "3",
        "requote_bps": "2", "refresh_s": 1.0,
    }
    assert msgspec.to_builtins(TakerParams("X", D("0.001"))) == {
        "market": "X", "lot_size": "0.001", "order_usd": "300", "max_position_usd": "10000", "mean_interval_s": 1.0,
    }
    assert msgspec.to_builtins(BotMarket("X", D("0.01"), D("0.001"))) == {
        "symbol": "X", "tick_size": "0.01", "lot_size": "0.001", "quote_usd": "1000",
        "maker_max_position_usd": "20000", "order_usd": "300", "taker_max_position_usd": "10000",
        "taker_interval_s": 1.0,
    }


# ------------------------------------------------------------------ the maker's ladder


def test_flat_ladder_around_a_mark_of_100():
    assert quotes(D(100), D(0), "external", NVDA_MAKER) == [
        Quote("buy", D("99.90"), D("10.000")), Quote("buy", D("99.80"), D("10.000")),
        Quote("buy", D("99.70"), D("10.000")),
        Quote("sell", D("100.10"), D("10.000")), Quote("sell", D("100.20"), D("10.000")),
        Quote("sell", D("100.30"), D("10.000")),
    ]


def test_rounding_moves_bids_down_and_asks_up_to_the_tick():
    ladder = quotes(D("100.003"), D(0), "external", NVDA_MAKER)
    assert ladder[0] == Quote("buy", D("99.90"), D("10.000"))  # 99.9029… floors
    assert ladder[3] == Quote("sell", D("100.11"), D("10.000"))  # 100.1030… ceils


@pytest.mark.parametrize("mode, widen", [("external", 1), ("internal", 3), ("reopening", 3), ("pre_ipo", 3)])
def test_the_spread_widens_while_the_market_is_dark(mode, widen):
    ladder = quotes(D(100), D(0), mode, NVDA_MAKER)
    best_bid, best_ask = ladder[0].price, ladder[3].price
    assert best_ask - best_bid == D("0.20") * widen


def test_halted_or_no_mark_quotes_nothing():
    assert quotes(D(100), D(0), "halted", NVDA_MAKER) == []
    assert quotes(None, D(0), "external", NVDA_MAKER) == []


@pytest.mark.parametrize("inventory, centre_moves", [(D(50), -1), (D(-50), 1), (D(0), 0)])
def test_inventory_skews_the_centre_against_the_position(inventory, centre_moves):
    ladder = quotes(D(100), inventory, "external", NVDA_MAKER)
    bid = max(q.price for q in ladder if q.side == "buy")
    ask = min(q.price for q in ladder if q.side == "sell")
    centre = (bid + ask) / 2
    assert (centre > 100) - (centre < 100) == centre_moves


def test_a_full_long_shows_no_bids_and_a_nearly_full_one_a_cut_bid():
    assert [q.side for q in quotes(D(100), D(100), "external", NVDA_MAKER)] == ["sell"] * 3
    ladder = quotes(D(100), D("95.5"), "external", NVDA_MAKER)  # 4.5 shares of room to buy
    assert [q.size for q in ladder if q.side == "buy"] == [D("4.500")]
    assert sum(q.size for q in ladder if q.side == "sell") == D(30)


def test_dark_quotes_outside_the_discovery_band_are_left_out():
    ladder = quotes(D(100), D(0), "internal", NVDA_MAKER, band=(D("99.50"), D("100.50")))
    assert [q.price for q in ladder] == [D("99.70"), D("100.30")]


def test_bids_stay_below_asks_for_any_mark_and_inventory():
    rng = random.Random(11)
    for _ in range(300):
        mark = D(rng.randrange(1, 10_000_000)) / 100
        inventory = D(rng.randrange(-500_000, 500_000)) / 1000
        ladder = quotes(mark, inventory, rng.choice(["external", "internal"]), NVDA_MAKER)
        bids = [q.price for q in ladder if q.side == "buy"]
        asks = [q.price for q in ladder if q.side == "sell"]
        assert not bids or not asks or max(bids) < min(asks)
        assert all(q.price % NVDA_MAKER.tick_size == 0 and q.size % NVDA_MAKER.lot_size == 0 for q in ladder)


def test_moved_needs_the_threshold():
    assert not moved(D(100), D("100.01"), D(2)) and moved(D(100), D("100.02"), D(2))
    assert moved(None, D(100), D(2)) and not moved(None, None, D(2))


# ------------------------------------------------------------------ the taker's orders


def test_taker_orders_are_whole_lots_near_the_order_notional():
    rng = random.Random(3)
    sides = set()
    for _ in range(200):
        side, size = next_order(rng, D(100), D(0), NVDA_TAKER)
        sides.add(side)
        assert size % NVDA_TAKER.lot_size == 0 and D(150) <= size * 100 < D(450)
    assert sides == {"buy", "sell"}


@pytest.mark.parametrize("inventory, side", [(D(100), "sell"), (D(-100), "buy")])
def test_taker_at_its_limit_only_trades_back_toward_flat(inventory, side):
    rng = random.Random(4)
    assert {next_order(rng, D(100), inventory, NVDA_TAKER)[0] for _ in range(50)} == {side}


def test_taker_sends_at_least_one_lot():
    assert next_order(random.Random(1), D(1_000_000), D(0), NVDA_TAKER)[1] == D("0.001")


def test_bot_markets_from_engine_specs():
    spec = MarketSpec(0, "NVDA", D("0.01"), D("0.001"), max_order_lots=10_000_000)
    assert bot_markets([spec]) == [BotMarket("NVDA", D("0.01"), D("0.001"))]


# ------------------------------------------------------------------ the loops, over a socket


@pytest_asyncio.fixture
async def gateway(aiohttp_server):
    fake = FakeGateway()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/ws"))
    yield fake
    await fake.drop_all()


async def eventually(predicate, timeout: float = 20.0) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def ladder_of(params, mark, mode):
    return [(q.side, q.price, q.size) for q in quotes(D(mark), D(0), mode, params)]


@pytest.mark.asyncio
async def test_the_maker_keeps_its_ladder_resting_and_follows_mark_and_mode(gateway):
    params = msgspec.structs.replace(NVDA_MAKER, refresh_s=0.02)
    await gateway.set_market("NVDA", "100")
    async with Client(ClientConfig(gateway.url, network=NETWORK), gateway.signer) as client:
        task = asyncio.ensure_future(MarketMaker(client, params).run())
        try:
            await eventually(lambda: gateway.resting("NVDA") == ladder_of(params, 100, "external"))
            await gateway.set_market("NVDA", "101")
            await eventually(lambda: gateway.resting("NVDA") == ladder_of(params, 101, "external"))
            await gateway.set_market("NVDA", "101", mode="internal")
            await eventually(lambda: gateway.resting("NVDA") == ladder_of(params, 101, "internal"))
            await gateway.set_market("NVDA", "101", mode="halted")
            await eventually(lambda: gateway.resting("NVDA") == [])
            await gateway.set_market("NVDA", "101")
            await eventually(lambda: gateway.resting("NVDA") == ladder_of(params, 101, "external"))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert gateway.resting("NVDA") == []  # a stopped maker pulls its quotes


@pytest.mark.asyncio
async def test_the_taker_sends_market_orders_only_while_trading(gateway):
    async with Client(ClientConfig(gateway.url, network=NETWORK), gateway.signer) as client:
        taker = NoiseTaker(client, NVDA_TAKER, random.Random(9))
        task = asyncio.ensure_future(taker.run())
        try:
            await asyncio.sleep(0.1)
            assert taker.sent == 0  # no mark yet
            await gateway.set_market("NVDA", "100")
            await eventually(lambda: taker.sent >= 3)
            await gateway.set_market("NVDA", "100", mode="halted")
            await asyncio.sleep(0.3)  # an order already in flight may still be answered
            sent = taker.sent
            await asyncio.sleep(0.1)
            assert taker.sent == sent
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert {type(s).__name__ for s in taker.statuses} == {"Filled"}


@pytest.mark.asyncio
async def test_bot_coroutines_run_both_roles_until_cancelled(gateway):
    await gateway.set_market("NVDA", "100")
    market = BotMarket("NVDA", D("0.01"), D("0.001"), taker_interval_s=0.01)
    tasks = [asyncio.ensure_future(c) for c in
             bot_coroutines(gateway.url, maker=gateway.signer, taker=gateway.signer, markets=[market], network=NETWORK)]
    try:
        await eventually(lambda: len(gateway.resting("NVDA")) == 6
                         and any(getattr(post.action, "orderType", None) == "market" for post in gateway.posts))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
