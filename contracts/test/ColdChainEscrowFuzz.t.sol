// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {ColdChainEscrow} from "../src/ColdChainEscrow.sol";
import {TestStablecoin} from "../src/TestStablecoin.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Fuzz tests of one shipment's life, verdicts relayed through a real 2-of-3 router.
contract ColdChainEscrowFuzzTest is Test, RouterFixture {
    OracleRouter internal router;
    ColdChainEscrow internal escrow;
    TestStablecoin internal token;
    uint256[] internal keys;
    address internal constant BUYER = address(0xB0B);
    address internal constant SELLER = address(0x5E11);
    bytes32 internal constant ID = keccak256("shipment one");
    uint64 internal nextEpoch = 1;

    function setUp() public {
        vm.warp(1_750_000_000);
        (router, keys) = deployRouter(3, 2);
        escrow = new ColdChainEscrow(router);
        router.scheduleConsumerApproval(address(escrow));
        token = new TestStablecoin();
    }

    function _open(uint256 amount, uint64 ttl) internal returns (uint64 deadline) {
        deadline = uint64(block.timestamp) + ttl;
        token.mint(BUYER, amount);
        vm.prank(BUYER);
        token.approve(address(escrow), amount);
        vm.prank(BUYER);
        escrow.createShipment(ID, SELLER, token, amount, keccak256("2-8C"), deadline);
    }

    function _verdict(int256 value) internal {
        Report memory report = coldChainReport(ID, value, nextEpoch++);
        uint256[] memory signing = new uint256[](2);
        (signing[0], signing[1]) = (keys[0], keys[2]);
        router.submit(report, signSorted(signing, router.reportDigest(report)));
    }

    function _status() internal view returns (ColdChainEscrow.Status) {
        return escrow.shipment(ID).status;
    }

    /// @dev Breach refunds the buyer, delivered pays the seller, no decision leaves it open; a verdict
    ///      accepted after the deadline still settles an open shipment.
    function testFuzz_verdictSettlesAsItSays(uint256 amount, uint64 ttl, uint8 value, uint64 lateBy) public {
        amount = bound(amount, 1, 1e30);
        ttl = uint64(bound(ttl, 1, 365 days));
        int256 v = int256(uint256(value % 3));
        uint64 deadline = _open(amount, ttl);
        vm.warp(bound(lateBy, block.timestamp, uint256(deadline) + 30 days));
        _verdict(v);
        if (v == 1) {
            assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Voided), "breach voids");
            assertEq(token.balanceOf(BUYER), amount, "buyer refunded");
            assertEq(token.balanceOf(SELLER), 0, "seller unpaid");
        } else if (v == 2) {
            assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Released), "delivered releases");
            assertEq(token.balanceOf(SELLER), amount, "seller paid");
            assertEq(token.balanceOf(BUYER), 0, "buyer not refunded");
        } else {
            assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Open), "no decision keeps it open");
            assertEq(token.balanceOf(address(escrow)), amount, "escrow still holds it");
        }
        assertEq(
            token.balanceOf(BUYER) + token.balanceOf(SELLER) + token.balanceOf(address(escrow)), amount, "conserved"
        );
    }

    /// @dev Only the buyer, only after the deadline, only once; a verdict after a reclaim moves nothing.
    function testFuzz_reclaimOnlyByBuyerAfterDeadline(uint256 amount, uint64 ttl, address caller, uint64 at) public {
        vm.assume(caller != BUYER);
        amount = bound(amount, 1, 1e30);
        ttl = uint64(bound(ttl, 1, 365 days));
        uint64 deadline = _open(amount, ttl);

        vm.warp(bound(at, block.timestamp, deadline));
        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.DeadlineNotReached.selector, deadline));
        escrow.reclaim(ID);

        vm.warp(bound(at, uint256(deadline) + 1, uint256(deadline) + 365 days));
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotBuyer.selector, caller));
        escrow.reclaim(ID);

        vm.prank(BUYER);
        escrow.reclaim(ID);
        assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Reclaimed), "reclaimed");
        assertEq(token.balanceOf(BUYER), amount, "buyer refunded");

        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotOpen.selector, ID));
        escrow.reclaim(ID);
        _verdict(2);
        assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Reclaimed), "a late verdict changes nothing");
        assertEq(token.balanceOf(SELLER), 0, "seller unpaid after reclaim");
    }

    /// @dev The first deciding verdict wins; later verdicts of any value change nothing.
    function testFuzz_settledShipmentIgnoresLaterVerdicts(uint256 amount, bool breachFirst, uint8 later) public {
        amount = bound(amount, 1, 1e30);
        _open(amount, 1 days);
        _verdict(breachFirst ? int256(1) : int256(2));
        ColdChainEscrow.Status settled = _status();
        _verdict(int256(uint256(later % 3)));
        _verdict(breachFirst ? int256(2) : int256(1));
        assertEq(uint256(_status()), uint256(settled), "final status unchanged");
        assertEq(token.balanceOf(breachFirst ? BUYER : SELLER), amount, "winner paid once");
        assertEq(token.balanceOf(breachFirst ? SELLER : BUYER), 0, "other side unpaid");
        assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
    }

    function testFuzz_onlyTheRouterMayReport(address caller, uint8 value) public {
        vm.assume(caller != address(router));
        _open(1e6, 1 days);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotRouter.selector, caller));
        escrow.onReport(coldChainReport(ID, int256(uint256(1 + value % 2)), 1));
        assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Open), "still open");
    }

    function testFuzz_anIdIsRegisteredOnce(address other, uint256 amount) public {
        vm.assume(other != address(0));
        amount = bound(amount, 1, 1e30);
        _open(1e6, 1 days);
        token.mint(other, amount);
        vm.prank(other);
        token.approve(address(escrow), amount);
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.ShipmentExists.selector, ID));
        escrow.createShipment(ID, other, token, amount, bytes32(0), uint64(block.timestamp + 1 days));
        assertEq(escrow.shipment(ID).buyer, BUYER, "first buyer keeps it");
    }
}
