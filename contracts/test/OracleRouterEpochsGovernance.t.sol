// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Fuzz tests of the router's epochs and its governance timelock.
contract OracleRouterEpochsGovernanceTest is Test, RouterFixture {
    OracleRouter internal router;
    uint256[] internal keys;
    bytes32 internal constant SUBJECT = keccak256("subject");

    function setUp() public {
        vm.warp(1_750_000_000);
        (router, keys) = deployRouter(4, 3);
    }

    function _submit(uint64 epoch, int256 value) internal returns (bool) {
        Report memory report = coldChainReport(SUBJECT, value, epoch);
        uint256[] memory signing = new uint256[](3);
        (signing[0], signing[1], signing[2]) = (keys[3], keys[1], keys[0]);
        try router.submit(report, signSorted(signing, router.reportDigest(report))) {
            return true;
        } catch {
            return false;
        }
    }

    /// @dev After epoch a, any epoch at or below a is refused and the latest report stays a's.
    function testFuzz_staleEpochIsRefused(uint64 a, uint64 b) public {
        a = uint64(bound(a, 1, 1000));
        b = uint64(bound(b, 0, a));
        assertTrue(_submit(a, 2), "fresh epoch accepted");
        (,,,, bytes32 hash) = router.latest(SUBJECT);
        Report memory stale = coldChainReport(SUBJECT, 1, b);
        uint256[] memory signing = new uint256[](3);
        (signing[0], signing[1], signing[2]) = (keys[0], keys[1], keys[2]);
        bytes memory sigs = signSorted(signing, router.reportDigest(stale));
        vm.expectRevert(abi.encodeWithSelector(OracleRouter.StaleEpoch.selector, SUBJECT, a, b));
        router.submit(stale, sigs);
        (uint64 epoch,, int256 value,, bytes32 after_) = router.latest(SUBJECT);
        assertEq(uint256(epoch), uint256(a), "epoch kept");
        assertEq(value, 2, "value kept");
        assertEq(after_, hash, "report kept");
    }

    function testFuzz_coldChainEpochIsBounded(uint64 epoch) public {
        epoch = uint64(bound(epoch, 1001, type(uint64).max));
        assertFalse(_submit(epoch, 1), "epoch above 1000 refused");
        assertTrue(_submit(1000, 1), "epoch 1000 accepted");
    }

    /// @dev A scheduled signer or threshold change cannot be activated a second early, and can be at
    ///      exactly its activatesAt.
    function testFuzz_governanceWaitsForItsDelay(uint64 delay, uint64 wait, uint256 newKey, uint8 k) public {
        delay = uint64(bound(delay, 1, router.MAX_MODEL_DELAY()));
        wait = uint64(bound(wait, 0, delay - 1));
        newKey = bound(newKey, 1, SECP256K1_N - 1);
        address signer = vm.addr(newKey);
        vm.assume(!router.isSigner(signer));
        router.setModelDelay(delay);
        bytes32 addId = router.scheduleAddSigner(signer);
        bytes32 thrId = router.scheduleThreshold(uint8(bound(k, 1, 5)));
        uint64 at = uint64(block.timestamp) + delay;

        vm.warp(block.timestamp + wait);
        vm.expectRevert(abi.encodeWithSelector(OracleRouter.TimelockNotExpired.selector, at, uint64(block.timestamp)));
        router.activateGovernance(addId);
        vm.expectRevert(abi.encodeWithSelector(OracleRouter.TimelockNotExpired.selector, at, uint64(block.timestamp)));
        router.activateGovernance(thrId);
        assertFalse(router.isSigner(signer), "not a signer before the delay");
        assertEq(uint256(router.threshold()), 3, "threshold unchanged before the delay");

        vm.warp(at);
        router.activateGovernance(addId);
        router.activateGovernance(thrId);
        assertTrue(router.isSigner(signer), "a signer at activatesAt");
        assertEq(uint256(router.threshold()), bound(k, 1, 5), "threshold at activatesAt");
    }

    /// @dev Lowering the delay waits out the current one, so it cannot shortcut a pending change.
    function testFuzz_shorterDelayWaitsOutTheCurrentOne(uint64 current, uint64 shorter, uint64 wait) public {
        current = uint64(bound(current, 2, router.MAX_MODEL_DELAY()));
        shorter = uint64(bound(shorter, 0, current - 1));
        wait = uint64(bound(wait, 0, current - 1));
        router.setModelDelay(current);
        router.setModelDelay(shorter);
        assertEq(uint256(router.modelDelay()), uint256(current), "still the current delay");
        vm.warp(block.timestamp + wait);
        vm.expectRevert();
        router.applyModelDelay();
        vm.warp(block.timestamp + current - wait);
        router.applyModelDelay();
        assertEq(uint256(router.modelDelay()), uint256(shorter), "shorter delay after the wait");
    }

    /// @dev removeSigner never leaves fewer signers than the threshold.
    function testFuzz_removeSignerKeepsThreshold(uint8 k, uint256 order) public {
        k = uint8(bound(k, 1, 4));
        router.scheduleThreshold(k); // the timelock is unarmed: applies at once
        for (uint256 i = 0; i < 4; ++i) {
            address s = vm.addr(keys[(order % 4 + i) % 4]);
            if (router.signerCount() - 1 < k) {
                vm.expectRevert(
                    abi.encodeWithSelector(
                        OracleRouter.InvalidThreshold.selector, uint256(k), uint256(router.signerCount() - 1)
                    )
                );
                router.removeSigner(s);
                assertTrue(router.isSigner(s), "kept");
            } else {
                router.removeSigner(s);
            }
            assertGe(uint256(router.signerCount()), uint256(router.threshold()), "count >= threshold");
        }
        assertEq(uint256(router.signerCount()), uint256(k), "removed down to k");
    }
}
