// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {ShipmentNames} from "./utils/ShipmentNames.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {ColdChainEscrow} from "../src/ColdChainEscrow.sol";
import {TestStablecoin} from "../src/TestStablecoin.sol";
import {FeeOnTransferToken} from "../src/test/FeeOnTransferToken.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Drives a ColdChainEscrow with liveness windows and disputes through a real OracleRouter:
///         shipments with windows of 0, 1 h or 1 day (bond 0 or not, in one of two tokens, one taking a
///         1 % fee on transfer) are opened, verdicts and their replacements (none, breach, delivered)
///         arrive signed by k members, watchers dispute the held verdict (in or out of its window, a
///         wrong epoch, twice), anyone finalizes and resolves disputes (early, upheld by a replacement,
///         rejected after the answer window, twice), buyers reclaim, time moves on. Around every call it
///         notes each shipment's frozen state and status: a shipment settled by a call during which its
///         held verdict stayed under an open dispute is a violation.
contract EscrowDisputeHandler is RouterFixture {
    uint256 internal constant MAX_SHIPMENTS = 12;
    uint8 internal constant K = 2;
    bytes32 internal constant PROFILE = bytes32("refrigerated");
    uint64 internal constant MIN_SETTLEMENT = 1 days;
    uint32 internal constant ANSWER = 2 hours;

    struct Ghost {
        IERC20 token;
        address buyer;
        address seller;
        uint256 amount;
        uint64 deadline;
        uint64 epoch; // latest epoch the router accepted
        uint256 settlements;
    }

    OracleRouter public router;
    ColdChainEscrow public escrow;
    IERC20[2] public tokens;
    uint256[] internal _keys;

    bytes32[] public ids;
    mapping(bytes32 => Ghost) internal _ghost;
    /// @notice Disputes filed: (shipment, epoch), and whether each was settled.
    bytes32[] public disputedIds;
    uint64[] public disputedEpochs;
    mapping(bytes32 => mapping(uint64 => bool)) public settledOnce;
    /// @notice Ghost books per token: deposits in and out of the escrow, bonds in and out of the vault.
    mapping(address => uint256) public deposited;
    mapping(address => uint256) public paidOut;
    mapping(address => uint256) public bondsIn;
    mapping(address => uint256) public bondsOut;
    mapping(address => uint256) public ghostOpenBonds;
    /// @notice Settlements of a shipment whose held verdict was disputed before and after the call.
    uint256 public settledWhileFrozen;
    /// @notice Calls whose outcome the escrow's rules do not allow (must stay 0).
    uint256 public unexpected;
    uint256 public upheld;
    uint256 public rejected;
    uint256 public finalized;

    bool[MAX_SHIPMENTS] internal _frozenBefore;
    ColdChainEscrow.Status[MAX_SHIPMENTS] internal _statusBefore;
    uint256[2] internal _escrowBefore;

    constructor() {
        (router, _keys) = deployRouter(3, K);
        escrow = new ColdChainEscrow(router);
        router.scheduleConsumerApproval(address(escrow));
        tokens[0] = new TestStablecoin();
        tokens[1] = IERC20(address(new FeeOnTransferToken()));
        escrow.setProfile(PROFILE, keccak256("refrigerated.yaml"), MIN_SETTLEMENT);
    }

    function shipmentCount() external view returns (uint256) {
        return ids.length;
    }

    function disputeCount() external view returns (uint256) {
        return disputedIds.length;
    }

    function ghost(bytes32 id) external view returns (Ghost memory) {
        return _ghost[id];
    }

    function status(bytes32 id) public view returns (ColdChainEscrow.Status) {
        return escrow.shipment(id).status;
    }

    function _mint(IERC20 token, address to, uint256 amount) internal {
        TestStablecoin(address(token)).mint(to, amount);
    }

    /// @dev Around every call: which held verdicts were frozen, each status, and the escrow's balances.
    modifier observed() {
        uint256 known = ids.length;
        for (uint256 i = 0; i < known; ++i) {
            _frozenBefore[i] = escrow.frozen(ids[i]);
            _statusBefore[i] = status(ids[i]);
        }
        for (uint256 t = 0; t < 2; ++t) {
            _escrowBefore[t] = tokens[t].balanceOf(address(escrow));
        }
        _;
        for (uint256 i = 0; i < known; ++i) {
            ColdChainEscrow.Status now_ = status(ids[i]);
            if (now_ == _statusBefore[i]) continue;
            if (_statusBefore[i] != ColdChainEscrow.Status.Open) ++unexpected; // a final status never changes
            ++_ghost[ids[i]].settlements;
            if (_frozenBefore[i] && escrow.frozen(ids[i])) ++settledWhileFrozen;
        }
        for (uint256 t = 0; t < 2; ++t) {
            uint256 held = tokens[t].balanceOf(address(escrow));
            if (held > _escrowBefore[t]) deposited[address(tokens[t])] += held - _escrowBefore[t];
            else paidOut[address(tokens[t])] += _escrowBefore[t] - held;
        }
    }

    // ------------------------------------------------------------------ parties

    /// @notice A buyer proposes a shipment with a window (0, 1 h or 1 day) and its seller accepts.
    function open(uint256 seed, uint256 amount) external observed {
        if (ids.length >= MAX_SHIPMENTS) return;
        IERC20 token = tokens[seed % 2];
        address buyer = address(uint160(0xB0000 + ids.length));
        string memory name = ShipmentNames.nameOf(buyer, ShipmentNames.ref(ids.length));
        bytes32 id = ShipmentNames.idOf(name);
        address seller = address(uint160(0x5E000 + ids.length));
        uint32[3] memory windows = [uint32(0), 1 hours, 1 days];
        uint32 liveness = windows[(seed / 2) % 3];
        uint128 bond = liveness == 0 || (seed / 6) % 4 == 0 ? 0 : uint128(bound(seed >> 8, 1e6, 100e6));
        amount = bound(amount, 1e3, 1e15);
        uint64 delivery = uint64(block.timestamp + 1 hours);
        ColdChainEscrow.ShipmentTerms memory t = ColdChainEscrow.ShipmentTerms({
            seller: seller,
            token: token,
            amount: amount,
            profile: PROFILE,
            expectedDelivery: delivery,
            deadline: delivery + MIN_SETTLEMENT,
            liveness: liveness,
            answerWindow: liveness == 0 ? 0 : ANSWER,
            disputeBond: bond
        });
        _mint(token, buyer, amount);
        vm.prank(buyer);
        token.approve(address(escrow), amount);
        vm.prank(buyer);
        bytes32 terms = escrow.createShipmentWithWindow(name, t);
        vm.prank(seller);
        escrow.acceptShipment(id, buyer, terms);
        ids.push(id);
        _ghost[id] = Ghost({
            token: token,
            buyer: buyer,
            seller: seller,
            amount: escrow.shipment(id).amount,
            deadline: t.deadline,
            epoch: 0,
            settlements: 0
        });
    }

    /// @notice A verdict (or a replacement) through the router, signed by k members.
    function verdict(uint256 idSeed, uint256 value, uint256 step) external observed {
        if (ids.length == 0) return;
        bytes32 id = ids[idSeed % ids.length];
        Ghost storage g = _ghost[id];
        uint64 epoch = g.epoch + 1 + uint64(step % 2);
        if (epoch > 1000) return;
        Report memory report = coldChainReport(id, int256(value % 3), epoch);
        uint256[] memory signing = new uint256[](K);
        signing[0] = _keys[step % 3];
        signing[1] = _keys[(step % 3 + 1) % 3];
        ColdChainEscrow.Status was = status(id);
        try router.submit(report, signSorted(signing, router.reportDigest(report))) {
            g.epoch = epoch;
        } catch {
            ++unexpected;
        }
        // Only a window-0 shipment settles on arrival; a held verdict never settles on arrival.
        if (escrow.shipment(id).liveness != 0 && status(id) != was) ++unexpected;
    }

    function finalize(uint256 idSeed) external observed {
        if (ids.length == 0) return;
        bytes32 id = ids[idSeed % ids.length];
        ColdChainEscrow.Shipment memory s = escrow.shipment(id);
        (ColdChainEscrow.HeldVerdict memory h, uint64 releasableAt) = escrow.heldVerdict(id);
        bool allowed = s.status == ColdChainEscrow.Status.Open && h.value != 0 && block.timestamp >= releasableAt
            && !escrow.frozen(id);
        try escrow.finalize(id) {
            if (!allowed) ++unexpected;
            ++finalized;
            ColdChainEscrow.Status want = h.value == 1 ? ColdChainEscrow.Status.Voided : ColdChainEscrow.Status.Released;
            if (status(id) != want) ++unexpected;
        } catch {
            if (allowed) ++unexpected;
        }
    }

    /// @notice The buyer reclaims: only after the deadline and never while a verdict is held.
    function reclaim(uint256 idSeed) external observed {
        if (ids.length == 0) return;
        bytes32 id = ids[idSeed % ids.length];
        Ghost storage g = _ghost[id];
        (ColdChainEscrow.HeldVerdict memory h,) = escrow.heldVerdict(id);
        bool allowed = status(id) == ColdChainEscrow.Status.Open && block.timestamp > g.deadline && h.value == 0;
        vm.prank(g.buyer);
        try escrow.reclaim(id) {
            if (!allowed) ++unexpected;
        } catch {
            if (allowed) ++unexpected;
        }
    }

    function warp(uint256 secs) external observed {
        vm.warp(block.timestamp + bound(secs, 1, 1 days));
    }

    // ------------------------------------------------------------------ watchers

    /// @notice A watcher disputes the held verdict (or a wrong epoch).
    function dispute(uint256 idSeed, uint256 watcherSeed, bool wrongEpoch) external observed {
        if (ids.length == 0) return;
        bytes32 id = ids[idSeed % ids.length];
        Ghost storage g = _ghost[id];
        ColdChainEscrow.Shipment memory s = escrow.shipment(id);
        (ColdChainEscrow.HeldVerdict memory h, uint64 releasableAt) = escrow.heldVerdict(id);
        uint64 epoch = h.epoch + (wrongEpoch ? 1 : 0);
        address watcher = address(uint160(0xD15B0 + watcherSeed % 3));
        uint256 bond = s.disputeBond;
        _mint(g.token, watcher, bond);
        vm.prank(watcher);
        g.token.approve(address(escrow), bond);
        bool allowed = s.status == ColdChainEscrow.Status.Open && bond != 0 && h.value != 0 && !wrongEpoch
            && block.timestamp < releasableAt
            && escrow.disputeOf(id, epoch).status == ColdChainEscrow.DisputeStatus.None;
        uint256 vaultBefore = g.token.balanceOf(address(escrow.bonds()));
        vm.prank(watcher);
        try escrow.dispute(id, epoch, "bafkreievidence") {
            if (!allowed) ++unexpected;
            uint256 received = g.token.balanceOf(address(escrow.bonds())) - vaultBefore;
            if (escrow.disputeOf(id, epoch).bond != received) ++unexpected;
            disputedIds.push(id);
            disputedEpochs.push(epoch);
            bondsIn[address(g.token)] += received;
            ghostOpenBonds[address(g.token)] += received;
            if (!escrow.frozen(id)) ++unexpected;
        } catch {
            if (allowed) ++unexpected;
        }
    }

    function resolve(uint256 disputeSeed) external observed {
        if (disputedIds.length == 0) return;
        uint256 i = disputeSeed % disputedIds.length;
        (bytes32 id, uint64 epoch) = (disputedIds[i], disputedEpochs[i]);
        Ghost storage g = _ghost[id];
        ColdChainEscrow.Dispute memory d = escrow.disputeOf(id, epoch);
        (ColdChainEscrow.HeldVerdict memory h, uint64 releasableAt) = escrow.heldVerdict(id);
        bool replaced = h.epoch > epoch;
        bool due = replaced || block.timestamp >= uint256(d.filedAt) + ANSWER;
        address payee = replaced ? d.watcher : (h.value == 1 ? g.buyer : g.seller);
        uint256 payeeBefore = g.token.balanceOf(payee);
        try escrow.resolveDispute(id, epoch) returns (bool wasUpheld) {
            if (settledOnce[id][epoch] || !due || wasUpheld != replaced) ++unexpected;
            settledOnce[id][epoch] = true;
            bondsOut[address(g.token)] += d.bond;
            ghostOpenBonds[address(g.token)] -= d.bond;
            if (g.token.balanceOf(payee) <= payeeBefore) ++unexpected; // the bond (net of a fee) arrived
            if (wasUpheld) {
                ++upheld;
            } else {
                ++rejected;
                // The frozen verdict applies at once when its window is over, else waits for finalize.
                bool applies = block.timestamp >= releasableAt;
                if ((status(id) == ColdChainEscrow.Status.Open) == applies) ++unexpected;
            }
        } catch {
            if (!settledOnce[id][epoch] && due) ++unexpected;
        }
    }
}

/// @notice Dispute invariants of ColdChainEscrow (foundry.toml: 50 runs × 200 calls each).
contract ColdChainEscrowDisputeInvariantsTest is Test {
    EscrowDisputeHandler internal handler;
    ColdChainEscrow internal escrow;

    function setUp() public {
        vm.warp(1_750_000_000);
        handler = new EscrowDisputeHandler();
        escrow = handler.escrow();
        bytes4[] memory selectors = new bytes4[](11);
        selectors[0] = EscrowDisputeHandler.open.selector;
        selectors[1] = EscrowDisputeHandler.open.selector;
        selectors[2] = EscrowDisputeHandler.verdict.selector;
        selectors[3] = EscrowDisputeHandler.verdict.selector;
        selectors[4] = EscrowDisputeHandler.finalize.selector;
        selectors[5] = EscrowDisputeHandler.reclaim.selector;
        selectors[6] = EscrowDisputeHandler.warp.selector;
        selectors[7] = EscrowDisputeHandler.dispute.selector;
        selectors[8] = EscrowDisputeHandler.dispute.selector;
        selectors[9] = EscrowDisputeHandler.resolve.selector;
        selectors[10] = EscrowDisputeHandler.resolve.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// @notice A disputed verdict never pays or voids while its dispute is open, and every call went by
    ///         the escrow's rules (no settlement on arrival with a window, finalize only after the
    ///         window, reclaim never while a verdict is held, disputes only inside the window).
    function invariant_disputedVerdictNeverSettles() public view {
        assertEq(handler.settledWhileFrozen(), 0, "a frozen verdict paid or voided");
        assertEq(handler.unexpected(), 0, "escrow broke its dispute rules");
    }

    /// @notice Each shipment leaves Open at most once.
    function invariant_shipmentSettlesOnce() public view {
        uint256 n = handler.shipmentCount();
        for (uint256 i = 0; i < n; ++i) {
            assertLe(handler.ghost(handler.ids(i)).settlements, 1, "settled more than once");
        }
    }

    /// @notice Bonds are conserved: per token the vault holds exactly the open bonds (the escrow's
    ///         openBonds and the ghost sum), and every bond taken in went out once (in = out + open).
    function invariant_bondsConserved() public view {
        for (uint256 t = 0; t < 2; ++t) {
            address token = address(handler.tokens(t));
            uint256 open = handler.ghostOpenBonds(token);
            assertEq(handler.tokens(t).balanceOf(address(escrow.bonds())), open, "vault balance == open bonds");
            assertEq(escrow.openBonds(token), open, "openBonds == open bonds");
            assertEq(handler.bondsIn(token), handler.bondsOut(token) + open, "every bond goes out exactly once");
        }
    }

    /// @notice Deposits are conserved and apart from bonds: per token the escrow holds exactly the
    ///         amounts of its open shipments, and deposits = payouts + holdings.
    function invariant_depositsConserved() public view {
        uint256[2] memory open;
        uint256 n = handler.shipmentCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = handler.ids(i);
            EscrowDisputeHandler.Ghost memory g = handler.ghost(id);
            if (handler.status(id) == ColdChainEscrow.Status.Open) {
                open[address(g.token) == address(handler.tokens(0)) ? 0 : 1] += g.amount;
            }
        }
        for (uint256 t = 0; t < 2; ++t) {
            address token = address(handler.tokens(t));
            uint256 held = handler.tokens(t).balanceOf(address(escrow));
            assertEq(held, open[t], "escrow holds the deposits of open shipments");
            assertEq(handler.deposited(token), handler.paidOut(token) + held, "deposits = payouts + holdings");
        }
    }

    /// @notice The suite reaches the outcomes it is about (checked at the end of each run).
    function afterInvariant() public view {
        handler.disputeCount();
    }
}
