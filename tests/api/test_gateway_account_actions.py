"""End to end over real sockets: the account actions setLeverage, setMarginMode, adjustMargin
and withdraw, accepted (status, engine state, the positions and account channels), rejected
(engine code, state unchanged), refused by scope and refused inside a batch."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import pytest_asyncio

from api import protocol as p
from api.errors import GatewayCode, wire_code
from api.ratelimit import Limits
from engine.codes import Reject
from engine.units import ATOMS_PER_USD
from gateway_harness import ALICE, Node, WsClient, connect, place, warm_engine

pytestmark = pytest.mark.asyncio

NVDA_ID = 0


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warm_engine()


@pytest_asyncio.fixture
async def node(tmp_path):
    node = Node(tmp_path, limits=Limits(idle_timeout_s=10**6, max_connection_age_s=10**7))
    node.alice_transfer = node.keys.create_ed25519(ALICE, ("read", "trade", "transfer"), key_id="alice-transfer",
                                                   seed=bytes(range(3, 35)))
    await node.start()
    yield node
    await node.sequencer.stop()


def atoms(usd: str) -> int:
    return int(Decimal(usd) * ATOMS_PER_USD)


async def only_status(ws: WsClient, action: p.Action, signer=None) -> p.ActionStatus:
    answer = await ws.post(action, signer)
    assert isinstance(answer, p.PostOk), answer
    [status] = answer.statuses
    return status


async def test_leverage_margin_mode_and_withdraw_accepted_and_shown_on_channels(node, aiohttp_client):
    alice = await connect(aiohttp_client, node, node.alice_transfer)
    await alice.subscribe(p.PositionsSub())
    await alice.subscribe(p.AccountSub())
    assert (await alice.next("positions")).data.isSnapshot
    assert (await alice.next("account")).data.collateral == "100000"

    status = await only_status(alice, p.SetLeverage(market="NVDA", leverage=5))
    assert status == p.LeverageSet("NVDA", 5)
    assert node.engine.position(ALICE, NVDA_ID).leverage == 5
    [shown] = (await alice.next("positions", where=lambda push: not push.data.isSnapshot)).data.positions
    assert (shown.market, shown.size, shown.leverage, shown.marginMode) == ("NVDA", "0", 5, "cross")

    status = await only_status(alice, p.SetMarginMode(market="NVDA", mode="isolated"))
    assert status == p.MarginModeSet("NVDA", "isolated")
    assert node.engine.position(ALICE, NVDA_ID).isolated
    [shown] = (await alice.next("positions", where=lambda push: not push.data.isSnapshot)).data.positions
    assert (shown.marginMode, shown.isolatedMargin) == ("isolated", "0")

    status = await only_status(alice, p.Withdraw(amount="1000.5"))
    assert status == p.Withdrawn("1000.5", "98999.5")
    assert node.engine.collateral(ALICE) == atoms("98999.5")
    account = (await alice.next("account", where=lambda push: push.data.collateral != "100000")).data
    assert (account.isSnapshot, account.collateral) == (False, "98999.5")


async def test_adjust_margin_on_an_isolated_position_over_rest(node, aiohttp_client):
    alice = await connect(aiohttp_client, node, node.alice)
    bob = await connect(aiohttp_client, node, node.bob)
    await alice.subscribe(p.PositionsSub())
    await alice.next("positions")
    assert await only_status(alice, p.SetMarginMode(market="NVDA", mode="isolated")) == p.MarginModeSet("NVDA", "isolated")
    assert isinstance(await only_status(bob, place("NVDA", "sell", "10", "100.00")), p.Resting)
    assert isinstance(await only_status(alice, place("NVDA", "buy", "10", "100.00", tif="ioc")), p.Filled)
    bucket = node.engine.position(ALICE, NVDA_ID).margin_atoms
    collateral = node.engine.collateral(ALICE)

    async def rest(action: p.Action) -> dict:
        body = node.alice.signed_action("local", action, node.nonce())
        resp = await node._client.post("/v1/action", data=p.encode(body))
        assert resp.status == 200
        return json.loads(await resp.read())

    answer = await rest(p.AdjustMargin(market="NVDA", amount="500"))
    assert answer["type"] == "ok"
    assert answer["statuses"][0] == {"status": "marginAdjusted", "market": "NVDA", "amount": "500",
                                     "margin": p.format_decimal(Decimal(bucket + atoms("500")).scaleb(-6).normalize())}
    assert node.engine.position(ALICE, NVDA_ID).margin_atoms == bucket + atoms("500")
    assert node.engine.collateral(ALICE) == collateral - atoms("500")
    margin = answer["statuses"][0]["margin"]
    shown = await alice.next("positions", where=lambda push: push.data.positions[0].isolatedMargin == margin)
    assert (shown.data.positions[0].marginMode, shown.data.positions[0].size) == ("isolated", "10.000")

    answer = await rest(p.AdjustMargin(market="NVDA", amount="-200.25"))
    assert answer["statuses"][0]["status"] == "marginAdjusted" and answer["statuses"][0]["amount"] == "-200.25"
    assert node.engine.position(ALICE, NVDA_ID).margin_atoms == bucket + atoms("299.75")
    assert node.engine.collateral(ALICE) == collateral - atoms("299.75")


async def test_rejects_carry_the_engine_code_and_change_nothing(node, aiohttp_client):
    alice = await connect(aiohttp_client, node, node.alice_transfer)
    bob = await connect(aiohttp_client, node, node.bob)
    assert isinstance(await only_status(bob, place("NVDA", "sell", "10", "100.00")), p.Resting)
    assert isinstance(await only_status(alice, place("NVDA", "buy", "1", "100.00", tif="ioc")), p.Filled)
    cases = [
        (p.SetLeverage(market="NVDA", leverage=0), Reject.LEVERAGE_INVALID),
        (p.SetMarginMode(market="NVDA", mode="isolated"), Reject.MARGIN_MODE_NOT_FLAT),
        (p.AdjustMargin(market="NVDA", amount="10"), Reject.NOT_ISOLATED),
        (p.Withdraw(amount="1000000"), Reject.WITHDRAW_TOO_LARGE),
    ]
    for action, code in cases:
        before = node.engine.state_hash()
        status = await only_status(alice, action)
        assert isinstance(status, p.Rejected) and status.code == wire_code(code), (action, status)
        assert status.msg.startswith(p.rejected(code).msg[:20])
        assert node.engine.state_hash() == before, action


async def test_removing_too_much_isolated_margin_is_rejected(node, aiohttp_client):
    alice = await connect(aiohttp_client, node, node.alice)
    bob = await connect(aiohttp_client, node, node.bob)
    await only_status(alice, p.SetMarginMode(market="NVDA", mode="isolated"))
    await only_status(bob, place("NVDA", "sell", "1", "100.00"))
    assert isinstance(await only_status(alice, place("NVDA", "buy", "1", "100.00", tif="ioc")), p.Filled)
    before = node.engine.state_hash()
    status = await only_status(alice, p.AdjustMargin(market="NVDA", amount="-50000"))
    assert status == p.rejected(Reject.MARGIN_REMOVE_TOO_LARGE)
    assert node.engine.state_hash() == before


async def test_scopes_and_batches(node, aiohttp_client):
    reader = await connect(aiohttp_client, node, node.reader)
    alice = await connect(aiohttp_client, node, node.alice)
    actions = [p.SetLeverage(market="NVDA", leverage=3), p.SetMarginMode(market="NVDA", mode="isolated"),
               p.AdjustMargin(market="NVDA", amount="1"), p.Withdraw(amount="1")]
    before = node.engine.state_hash()
    for action in actions:
        answer = await reader.post(action)
        assert isinstance(answer, p.PostError) and answer.code == wire_code(GatewayCode.SCOPE_MISSING), answer
    answer = await alice.post(p.Withdraw(amount="1"))
    assert isinstance(answer, p.PostError) and answer.code == wire_code(GatewayCode.SCOPE_MISSING)
    signed = await connect(aiohttp_client, node)
    answer = await signed.post(p.Withdraw(amount="1"), node.alice)
    assert isinstance(answer, p.PostError) and answer.code == wire_code(GatewayCode.SCOPE_MISSING)
    assert node.engine.state_hash() == before

    await alice.send('{"method":"post","id":77,"action":{"type":"batch","actions":['
                     '{"type":"setLeverage","market":"NVDA","leverage":3}]}}')
    push = await alice.next("post", where=lambda push: push.data.id == 77)
    assert push.data.response.code == wire_code(GatewayCode.NOT_IN_BATCH)
    assert node.engine.position(ALICE, NVDA_ID).leverage != 3
