// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {ShipmentNames} from "./utils/ShipmentNames.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {ColdChainEscrow} from "../src/ColdChainEscrow.sol";
import {TestStablecoin} from "../src/TestStablecoin.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Fuzz tests of the liveness window arithmetic of one shipment (verdicts through a 2-of-3 router):
///         a verdict is final exactly `liveness` seconds after it arrived, disputable exactly before that,
///         a dispute rejectable exactly `answerWindow` seconds after filing, and bad windows are refused.
contract ColdChainEscrowWindowFuzzTest is Test, RouterFixture {
    OracleRouter internal router;
    ColdChainEscrow internal escrow;
    TestStablecoin internal token;
    uint256[] internal keys;
    address internal constant BUYER = address(0xB0B);
    address internal constant SELLER = address(0x5E11);
    address internal constant WATCHER = address(0xD15B);
    string internal NAME;
    bytes32 internal ID;
    bytes32 internal constant PROFILE = bytes32("refrigerated");
    uint64 internal constant MIN_SETTLEMENT = 2 days;
    uint256 internal constant AMOUNT = 1_000e6;
    uint128 internal constant BOND = 50e6;
    uint64 internal nextEpoch = 1;

    function setUp() public {
        vm.warp(1_750_000_000);
        (router, keys) = deployRouter(3, 2);
        escrow = new ColdChainEscrow(router);
        router.scheduleConsumerApproval(address(escrow));
        escrow.setProfile(PROFILE, keccak256("refrigerated.yaml"), MIN_SETTLEMENT);
        token = new TestStablecoin();
        NAME = ShipmentNames.nameOf(BUYER, "shipment-one");
        ID = ShipmentNames.idOf(NAME);
    }

    function _terms(uint32 liveness, uint32 answer, uint128 bond)
        internal
        view
        returns (ColdChainEscrow.ShipmentTerms memory)
    {
        uint64 delivery = uint64(block.timestamp) + 1 days;
        return ColdChainEscrow.ShipmentTerms({
            seller: SELLER,
            token: token,
            amount: AMOUNT,
            profile: PROFILE,
            expectedDelivery: delivery,
            deadline: delivery + MIN_SETTLEMENT,
            liveness: liveness,
            answerWindow: answer,
            disputeBond: bond
        });
    }

    function _open(uint32 liveness, uint32 answer) internal {
        token.mint(BUYER, AMOUNT);
        vm.prank(BUYER);
        token.approve(address(escrow), AMOUNT);
        vm.prank(BUYER);
        bytes32 terms = escrow.createShipmentWithWindow(NAME, _terms(liveness, answer, BOND));
        vm.prank(SELLER);
        escrow.acceptShipment(ID, BUYER, terms);
    }

    function _verdict(int256 value) internal returns (uint64 epoch) {
        epoch = nextEpoch++;
        Report memory report = coldChainReport(ID, value, epoch);
        uint256[] memory signing = new uint256[](2);
        (signing[0], signing[1]) = (keys[0], keys[1]);
        router.submit(report, signSorted(signing, router.reportDigest(report)));
    }

    function _dispute(uint64 epoch) internal {
        token.mint(WATCHER, BOND);
        vm.prank(WATCHER);
        token.approve(address(escrow), BOND);
        vm.prank(WATCHER);
        escrow.dispute(ID, epoch, "bafkreievidence");
    }

    function _status() internal view returns (ColdChainEscrow.Status) {
        return escrow.shipment(ID).status;
    }

    /// @dev Final at arrival + liveness, not a second before; disputable before it, not at it.
    function testFuzz_finalExactlyWhenTheWindowEnds(uint32 liveness, uint32 early, bool breach) public {
        liveness = uint32(bound(liveness, 1, escrow.MAX_WINDOW()));
        _open(liveness, 1 hours);
        uint256 arrived = block.timestamp;
        _verdict(breach ? int256(1) : int256(2));
        (ColdChainEscrow.HeldVerdict memory h, uint64 releasableAt) = escrow.heldVerdict(ID);
        assertEq(uint256(releasableAt), arrived + liveness, "releasable at arrival + liveness");
        assertEq(uint256(h.arrivedAt), arrived, "arrival recorded");
        vm.warp(arrived + bound(early, 0, liveness - 1));
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotFinal.selector, ID, "liveness window open"));
        escrow.finalize(ID);
        vm.warp(arrived + liveness);
        vm.expectRevert(
            abi.encodeWithSelector(ColdChainEscrow.NotDisputable.selector, ID, h.epoch, "liveness window over")
        );
        escrow.dispute(ID, h.epoch, "bafkreilate");
        escrow.finalize(ID);
        assertEq(
            uint256(_status()),
            uint256(breach ? ColdChainEscrow.Status.Voided : ColdChainEscrow.Status.Released),
            "the held verdict decides"
        );
        assertEq(token.balanceOf(breach ? BUYER : SELLER), AMOUNT, "paid to the side the verdict names");
    }

    /// @dev A dispute filed at any moment inside the window is rejectable exactly answerWindow later, and
    ///      the frozen verdict then applies only once its own window is over too.
    function testFuzz_rejectableExactlyWhenTheAnswerWindowEnds(uint32 liveness, uint32 answer, uint32 filedAfter)
        public
    {
        liveness = uint32(bound(liveness, 1, escrow.MAX_WINDOW()));
        answer = uint32(bound(answer, 1, escrow.MAX_WINDOW()));
        _open(liveness, answer);
        uint256 arrived = block.timestamp;
        uint64 epoch = _verdict(2);
        vm.warp(arrived + bound(filedAfter, 0, liveness - 1));
        uint256 filed = block.timestamp;
        _dispute(epoch);
        vm.warp(filed + answer - 1);
        vm.expectRevert(
            abi.encodeWithSelector(ColdChainEscrow.DisputeUnanswered.selector, ID, epoch, filed + answer)
        );
        escrow.resolveDispute(ID, epoch);
        vm.warp(filed + answer);
        assertEq(escrow.resolveDispute(ID, epoch) ? 1 : 0, 0, "rejected");
        assertEq(token.balanceOf(SELLER), BOND + (filed + answer >= arrived + liveness ? AMOUNT : 0), "seller");
        if (filed + answer < arrived + liveness) {
            assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Open), "waits for its own window");
            vm.warp(arrived + liveness);
            escrow.finalize(ID);
        }
        assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Released), "the verdict applies");
        assertEq(token.balanceOf(address(escrow.bonds())), 0, "vault empty");
        assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
    }

    /// @dev A replacement restarts the window from its own arrival and upholds a dispute of the old one.
    function testFuzz_replacementRestartsTheWindow(uint32 liveness, uint32 gap) public {
        liveness = uint32(bound(liveness, 2, escrow.MAX_WINDOW()));
        _open(liveness, 1 hours);
        uint64 first = _verdict(2);
        _dispute(first);
        vm.warp(block.timestamp + bound(gap, 1, 60 days));
        uint256 arrived = block.timestamp;
        _verdict(1);
        assertTrue(escrow.resolveDispute(ID, first), "upheld");
        assertEq(token.balanceOf(WATCHER), BOND, "bond back");
        vm.warp(arrived + liveness - 1);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotFinal.selector, ID, "liveness window open"));
        escrow.finalize(ID);
        vm.warp(arrived + liveness);
        escrow.finalize(ID);
        assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Voided), "the replacement decides");
    }

    /// @dev A window is off (all zero) or liveness and answer window both in 1 .. MAX_WINDOW.
    function testFuzz_badWindowsRefused(uint32 liveness, uint32 answer, uint128 bond) public {
        liveness = uint32(bound(liveness, 0, uint256(escrow.MAX_WINDOW()) + 2));
        answer = uint32(bound(answer, 0, uint256(escrow.MAX_WINDOW()) + 2));
        bool ok = liveness == 0
            ? (answer == 0 && bond == 0)
            : (liveness <= escrow.MAX_WINDOW() && answer != 0 && answer <= escrow.MAX_WINDOW());
        token.mint(BUYER, AMOUNT);
        vm.prank(BUYER);
        token.approve(address(escrow), AMOUNT);
        vm.prank(BUYER);
        try escrow.createShipmentWithWindow(NAME, _terms(liveness, answer, bond)) returns (bytes32) {
            assertTrue(ok, "accepted a bad window");
        } catch {
            assertFalse(ok, "refused a good window");
        }
    }
}
