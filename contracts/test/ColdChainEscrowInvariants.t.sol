// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {ShipmentNames} from "./utils/ShipmentNames.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {ColdChainEscrow} from "../src/ColdChainEscrow.sol";
import {TestStablecoin} from "../src/TestStablecoin.sol";
import {FeeOnTransferToken} from "../src/test/FeeOnTransferToken.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Drives a ColdChainEscrow through a real OracleRouter: buyers propose shipments in one of two
///         tokens (one takes a 1 % fee on transfer), sellers accept them (or a stranger tries), buyers cancel
///         proposals, strangers copy names already taken (refused: a name carries its buyer's address),
///         verdicts (none, breach, delivered) reach the escrow only as router reports signed
///         with `vm.sign` by k of the n members (or by too few, then refused), buyers and strangers try
///         to reclaim before and after deadlines, strangers call `onReport` directly, time moves on.
///         Every token movement is measured by balances around each call and booked to the one
///         shipment the call concerned.
contract EscrowHandler is RouterFixture {
    uint256 internal constant MAX_SHIPMENTS = 24;
    uint256 internal constant ACTORS = 3;
    uint8 internal constant K = 2;
    bytes32 internal constant PROFILE = bytes32("refrigerated");
    uint64 internal constant MIN_SETTLEMENT = 1 days;

    enum Status {
        None,
        Open,
        Voided,
        Released,
        Reclaimed,
        Proposed,
        Cancelled
    }

    struct Ghost {
        address buyer;
        address seller;
        TestStablecoin token;
        uint256 amount;
        uint64 deadline;
        bytes32 terms;
        uint64 epoch; // latest epoch the router accepted for this shipment
        Status settled; // the final status seen right after the call that settled it (None while open)
        uint256 settlements; // calls that moved it from Open to a final status
        uint256 paidToBuyer;
        uint256 paidToSeller;
    }

    OracleRouter public router;
    ColdChainEscrow public escrow;
    TestStablecoin[2] public tokens; // tokens[1] is a FeeOnTransferToken (same mint/balanceOf ABI)
    uint256[] internal _keys;
    address[ACTORS] internal _buyers;
    address[ACTORS] internal _sellers;
    address public constant STRANGER = address(0x5757);

    bytes32[] public ids;
    mapping(bytes32 => Ghost) internal _ghost;
    mapping(bytes32 => string) internal names; // shipment id => the buyer-prefixed name it was proposed under
    mapping(address => uint256) public deposited; // per token
    mapping(address => uint256) public paidOut; // per token
    uint256 public unexpected; // outcomes the escrow's rules do not allow
    uint256 public settledCount;
    uint256 internal _heldBefore; // the escrow's balance of the shipment's token before the current call

    constructor() {
        (router, _keys) = deployRouter(3, K);
        escrow = new ColdChainEscrow(router);
        router.scheduleConsumerApproval(address(escrow)); // the timelock is unarmed: approved at once
        tokens[0] = new TestStablecoin();
        tokens[1] = TestStablecoin(address(new FeeOnTransferToken()));
        escrow.setProfile(PROFILE, keccak256("refrigerated.yaml"), MIN_SETTLEMENT);
        for (uint256 i = 0; i < ACTORS; ++i) {
            _buyers[i] = address(uint160(0xB0000 + i));
            _sellers[i] = address(uint160(0x5E000 + i));
        }
    }

    function shipmentCount() external view returns (uint256) {
        return ids.length;
    }

    /// @notice What a recipient gets when the escrow sends `amount` of `token` (tokens[1] keeps its fee).
    function net(address token, uint256 amount) external view returns (uint256) {
        if (token != address(tokens[1])) return amount;
        return amount - (amount * FeeOnTransferToken(token).feeBps()) / 10_000;
    }

    function ghost(bytes32 id) external view returns (Ghost memory) {
        return _ghost[id];
    }

    /// @dev The status of the proposal the ghost tracks for `id` (accepted or not).
    function status(bytes32 id) public view returns (Status) {
        Ghost storage g = _ghost[id];
        return Status(uint8(escrow.proposal(id, g.buyer, g.seller).status));
    }

    // ------------------------------------------------------------------ actions

    function create(uint256 buyerSeed, uint256 sellerSeed, uint256 tokenSeed, uint256 amount, uint256 ttl) external {
        if (ids.length > 0 && (ids.length >= MAX_SHIPMENTS || buyerSeed % 8 == 0)) {
            _createExisting(ids[sellerSeed % ids.length], amount);
            return;
        }
        address buyer = _buyers[buyerSeed % ACTORS];
        address seller = _sellers[sellerSeed % ACTORS];
        TestStablecoin token = tokens[tokenSeed % 2];
        amount = bound(amount, 1e3, 1e15);
        uint64 delivery = uint64(block.timestamp + bound(ttl, 1 hours, 5 days));
        uint64 deadline = delivery + MIN_SETTLEMENT + uint64(bound(ttl >> 64, 0, 5 days));
        string memory name = ShipmentNames.nameOf(buyer, ShipmentNames.ref(ids.length));
        bytes32 id = ShipmentNames.idOf(name);
        token.mint(buyer, amount);
        vm.prank(buyer);
        token.approve(address(escrow), amount);
        uint256 before = token.balanceOf(address(escrow));
        vm.prank(buyer);
        try escrow.createShipment(name, seller, token, amount, PROFILE, delivery, deadline) returns (bytes32 terms) {
            uint256 received = token.balanceOf(address(escrow)) - before;
            ids.push(id);
            names[id] = name;
            Ghost storage g = _ghost[id];
            (g.buyer, g.seller, g.token) = (buyer, seller, token);
            (g.amount, g.deadline, g.terms) = (received, deadline, terms);
            // The recorded amount is what arrived, not what was asked for.
            if (escrow.proposal(id, buyer, seller).amount != received) ++unexpected;
            if (status(id) != Status.Proposed) ++unexpected;
            deposited[address(token)] += received;
        } catch {
            ++unexpected;
        }
    }

    /// @notice The seller (or a stranger, who must be refused) accepts a proposal's exact terms.
    function accept(uint256 idSeed, bool asSeller) external {
        if (ids.length == 0) return;
        bytes32 id = ids[idSeed % ids.length];
        Ghost storage g = _ghost[id];
        Status was = status(id);
        bool allowed = was == Status.Proposed && asSeller;
        (uint256 buyerBefore, uint256 sellerBefore) = (g.token.balanceOf(g.buyer), g.token.balanceOf(g.seller));
        _heldBefore = g.token.balanceOf(address(escrow));
        vm.prank(asSeller ? g.seller : STRANGER);
        try escrow.acceptShipment(id, g.buyer, g.terms) {
            if (!allowed) ++unexpected;
        } catch {
            if (allowed) ++unexpected;
        }
        _book(id, was, buyerBefore, sellerBefore);
        if (status(id) != (allowed ? Status.Open : was)) ++unexpected;
    }

    /// @notice The buyer (or a stranger) cancels: allowed only before acceptance, refunds the deposit.
    function cancel(uint256 idSeed, bool asBuyer) external {
        if (ids.length == 0) return;
        bytes32 id = ids[idSeed % ids.length];
        Ghost storage g = _ghost[id];
        Status was = status(id);
        bool allowed = was == Status.Proposed && asBuyer;
        (uint256 buyerBefore, uint256 sellerBefore) = (g.token.balanceOf(g.buyer), g.token.balanceOf(g.seller));
        _heldBefore = g.token.balanceOf(address(escrow));
        vm.prank(asBuyer ? g.buyer : STRANGER);
        try escrow.cancelShipment(id, g.seller) {
            if (!allowed) ++unexpected;
        } catch {
            if (allowed) ++unexpected;
        }
        _book(id, was, buyerBefore, sellerBefore);
        if (status(id) != (allowed ? Status.Cancelled : was)) ++unexpected;
    }

    /// @dev A stranger copying a tracked shipment's name (a front-run attempt, before or after the seller
    ///      accepted): always refused, since the name carries the buyer's address, and it never changes the
    ///      tracked proposal or moves a token.
    function _createExisting(bytes32 id, uint256 amount) internal {
        Ghost storage g = _ghost[id];
        TestStablecoin token = g.token;
        Status was = status(id);
        amount = bound(amount, 1e3, 1e15);
        token.mint(STRANGER, amount);
        vm.prank(STRANGER);
        token.approve(address(escrow), amount);
        uint64 delivery = uint64(block.timestamp + 1 hours);
        (uint256 buyerBefore, uint256 sellerBefore) = (token.balanceOf(g.buyer), token.balanceOf(g.seller));
        _heldBefore = token.balanceOf(address(escrow));
        vm.prank(STRANGER);
        try escrow.createShipment(names[id], g.seller, token, amount, PROFILE, delivery, delivery + MIN_SETTLEMENT) {
            ++unexpected;
            vm.prank(STRANGER);
            escrow.cancelShipment(id, g.seller);
        } catch (bytes memory reason) {
            bytes memory want = abi.encodeWithSelector(ColdChainEscrow.NameNotBuyers.selector, names[id], STRANGER);
            if (keccak256(reason) != keccak256(want)) ++unexpected;
        }
        _book(id, was, buyerBefore, sellerBefore);
    }

    /// @notice A verdict for a shipment, relayed through the router. `quorum` false signs with k - 1
    ///         members (the router refuses it and nothing may move); an old epoch is refused as stale.
    function verdict(uint256 idSeed, uint256 value, uint256 epochSeed, bool quorum) external {
        if (ids.length == 0) return;
        bytes32 id = ids[idSeed % ids.length];
        Ghost storage g = _ghost[id];
        uint64 epoch = epochSeed % 5 == 0 ? g.epoch : g.epoch + 1 + uint64(epochSeed % 3);
        Report memory report = coldChainReport(id, int256(value % 3), epoch);
        uint256[] memory signing = new uint256[](quorum ? K : K - 1);
        uint256 first = epochSeed % 3;
        for (uint256 i = 0; i < signing.length; ++i) {
            signing[i] = _keys[(first + i) % 3];
        }
        bytes memory sigs = signSorted(signing, router.reportDigest(report));

        Status was = status(id);
        bool willAccept = quorum && epoch > g.epoch && epoch <= 1000;
        (uint256 buyerBefore, uint256 sellerBefore) = (g.token.balanceOf(g.buyer), g.token.balanceOf(g.seller));
        _heldBefore = g.token.balanceOf(address(escrow));
        try router.submit(report, sigs) {
            if (!willAccept) ++unexpected;
            g.epoch = epoch;
        } catch {
            if (willAccept) ++unexpected;
        }
        _book(id, was, buyerBefore, sellerBefore);
        // The escrow's rule: an accepted breach voids an open shipment, delivered releases it.
        // A proposal the seller has not accepted is not settled by any verdict.
        Status expected = was;
        if (willAccept && was == Status.Open) {
            if (value % 3 == 1) expected = Status.Voided;
            if (value % 3 == 2) expected = Status.Released;
        }
        if (status(id) != expected) ++unexpected;
    }

    function reclaim(uint256 idSeed, bool asBuyer) external {
        if (ids.length == 0) return;
        bytes32 id = ids[idSeed % ids.length];
        Ghost storage g = _ghost[id];
        Status was = status(id);
        address caller = asBuyer ? g.buyer : STRANGER;
        bool allowed = was == Status.Open && asBuyer && block.timestamp > g.deadline;
        (uint256 buyerBefore, uint256 sellerBefore) = (g.token.balanceOf(g.buyer), g.token.balanceOf(g.seller));
        _heldBefore = g.token.balanceOf(address(escrow));
        vm.prank(caller);
        try escrow.reclaim(id) {
            if (!allowed) ++unexpected;
        } catch {
            if (allowed) ++unexpected;
        }
        _book(id, was, buyerBefore, sellerBefore);
        if (status(id) != (allowed ? Status.Reclaimed : was)) ++unexpected;
    }

    /// @notice Anyone but the router calling onReport directly must be refused.
    function spoofReport(uint256 idSeed, uint256 value) external {
        if (ids.length == 0) return;
        bytes32 id = ids[idSeed % ids.length];
        Ghost storage g = _ghost[id];
        Status was = status(id);
        (uint256 buyerBefore, uint256 sellerBefore) = (g.token.balanceOf(g.buyer), g.token.balanceOf(g.seller));
        _heldBefore = g.token.balanceOf(address(escrow));
        vm.prank(STRANGER);
        try escrow.onReport(coldChainReport(id, int256(1 + value % 2), g.epoch + 1)) {
            ++unexpected;
        } catch {}
        _book(id, was, buyerBefore, sellerBefore);
    }

    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + bound(seconds_, 0, 3 days));
    }

    /// @dev Book what the call paid the shipment's buyer and seller, and note a settlement.
    function _book(bytes32 id, Status was, uint256 buyerBefore, uint256 sellerBefore) internal {
        Ghost storage g = _ghost[id];
        uint256 buyerAfter = g.token.balanceOf(g.buyer);
        uint256 sellerAfter = g.token.balanceOf(g.seller);
        if (buyerAfter < buyerBefore || sellerAfter < sellerBefore) ++unexpected; // nobody is charged here
        g.paidToBuyer += buyerAfter - buyerBefore;
        g.paidToSeller += sellerAfter - sellerBefore;
        // What left the escrow (gross: a fee-on-transfer token burns part of it on the way).
        uint256 heldAfter = g.token.balanceOf(address(escrow));
        if (heldAfter > _heldBefore) ++unexpected; // only create deposits
        else paidOut[address(g.token)] += _heldBefore - heldAfter;
        Status now_ = status(id);
        if (now_ != was) {
            if ((was == Status.Proposed && (now_ == Status.Open || now_ == Status.Cancelled))) {
                if (now_ == Status.Cancelled) {
                    ++g.settlements;
                    ++settledCount;
                    g.settled = now_;
                }
            } else if (was == Status.Open && now_ != Status.None && now_ != Status.Proposed) {
                ++g.settlements;
                ++settledCount;
                g.settled = now_;
            } else {
                ++unexpected; // proposed -> open or cancelled; open -> a final status; nothing else
            }
        }
    }
}

/// @notice Invariants of the escrow under EscrowHandler: 50 runs × 200 calls (foundry.toml).
contract ColdChainEscrowInvariantsTest is Test {
    EscrowHandler internal handler;
    ColdChainEscrow internal escrow;

    function setUp() public {
        vm.warp(1_750_000_000);
        handler = new EscrowHandler();
        escrow = handler.escrow();
        bytes4[] memory selectors = new bytes4[](7);
        selectors[0] = EscrowHandler.create.selector;
        selectors[1] = EscrowHandler.verdict.selector;
        selectors[2] = EscrowHandler.reclaim.selector;
        selectors[3] = EscrowHandler.spoofReport.selector;
        selectors[4] = EscrowHandler.warp.selector;
        selectors[5] = EscrowHandler.accept.selector;
        selectors[6] = EscrowHandler.cancel.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// @notice A shipment ends voided xor released xor reclaimed: it leaves Open at most once, to one
    ///         final status, never changes after that, and the escrow followed its rules on every call.
    function invariant_shipmentSettlesOnce() public {
        assertEq(handler.unexpected(), 0, "escrow broke its rules");
        uint256 n = handler.shipmentCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = handler.ids(i);
            EscrowHandler.Ghost memory g = handler.ghost(id);
            EscrowHandler.Status s = handler.status(id);
            assertLe(g.settlements, 1, "settled more than once");
            if (g.settlements == 0) {
                assertTrue(
                    s == EscrowHandler.Status.Open || s == EscrowHandler.Status.Proposed,
                    "unsettled shipment is proposed or open"
                );
            } else {
                assertEq(uint256(s), uint256(g.settled), "final status never changes");
                assertTrue(
                    s == EscrowHandler.Status.Voided || s == EscrowHandler.Status.Released
                        || s == EscrowHandler.Status.Reclaimed || s == EscrowHandler.Status.Cancelled,
                    "final status is voided, released, reclaimed or cancelled"
                );
            }
        }
    }

    /// @notice Funds out equal funds in: per token the escrow holds exactly the deposits of open
    ///         shipments, deposits = payouts + holdings, and each final shipment paid exactly its amount
    ///         to exactly one side (the buyer when voided or reclaimed, the seller when released).
    function invariant_fundsOutEqualFundsIn() public {
        uint256[2] memory open;
        uint256 n = handler.shipmentCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = handler.ids(i);
            EscrowHandler.Ghost memory g = handler.ghost(id);
            EscrowHandler.Status s = handler.status(id);
            uint256 t = address(g.token) == address(handler.tokens(0)) ? 0 : 1;
            if (s == EscrowHandler.Status.Open || s == EscrowHandler.Status.Proposed) {
                open[t] += g.amount;
                assertEq(g.paidToBuyer + g.paidToSeller, 0, "open shipment paid nothing");
            } else if (s == EscrowHandler.Status.Released) {
                assertEq(g.paidToSeller, handler.net(address(g.token), g.amount), "released: seller paid the amount");
                assertEq(g.paidToBuyer, 0, "released: buyer paid nothing");
            } else {
                assertEq(
                    g.paidToBuyer,
                    handler.net(address(g.token), g.amount),
                    "voided/reclaimed/cancelled: buyer refunded the amount"
                );
                assertEq(g.paidToSeller, 0, "voided/reclaimed/cancelled: seller paid nothing");
            }
        }
        for (uint256 t = 0; t < 2; ++t) {
            address token = address(handler.tokens(t));
            uint256 held = handler.tokens(t).balanceOf(address(escrow));
            assertEq(held, open[t], "escrow holds the deposits of open shipments");
            assertEq(handler.deposited(token), handler.paidOut(token) + held, "deposits = payouts + holdings");
        }
    }
}
