"""The wallets service with its trade settlement, for `nameko run` in tests."""
from services.wallets.service import WalletsService
from services.wallets.settlement import TradeSettlement


class WalletsWithSettlement(WalletsService):
    settlement = TradeSettlement()
