// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Fuzz tests of the router's signature checks: malleable twins, wrong recovery ids, duplicate
///         and out-of-order signers, non-members and malformed lengths are refused; k distinct members
///         are accepted whichever k of the n sign.
contract OracleRouterSignaturesTest is Test, RouterFixture {
    uint256 internal constant N = 5;
    uint8 internal constant K = 3;
    uint256 internal constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    OracleRouter internal router;
    uint256[] internal keys;

    function setUp() public {
        (router, keys) = deployRouter(N, K);
    }

    function _report(bytes32 subject, uint64 epoch) internal pure returns (Report memory) {
        return coldChainReport(subject, 1, epoch);
    }

    /// @dev Keys of k distinct members chosen by `seed` (a random k-subset of the n members).
    function _subset(uint256 seed, uint256 k) internal view returns (uint256[] memory out) {
        uint256[] memory pool = keys;
        uint256 left = pool.length;
        out = new uint256[](k);
        for (uint256 i = 0; i < k; ++i) {
            uint256 j = uint256(keccak256(abi.encode(seed, i))) % left;
            out[i] = pool[j];
            pool[j] = pool[left - 1];
            --left;
        }
    }

    function testFuzz_anyKDistinctMembersAreAccepted(uint256 seed, bytes32 subject, uint64 epoch, uint8 extra) public {
        epoch = uint64(bound(epoch, 1, 1000));
        uint256 k = bound(extra, K, N);
        Report memory report = _report(subject, epoch);
        router.submit(report, signSorted(_subset(seed, k), router.reportDigest(report)));
        (uint64 latestEpoch,,,, bytes32 hash) = router.latest(subject);
        assertEq(uint256(latestEpoch), uint256(epoch), "epoch stored");
        assertEq(hash, router.reportDigest(report), "digest stored");
    }

    function testFuzz_fewerThanKMembersAreRefused(uint256 seed, bytes32 subject, uint8 count) public {
        uint256 k = bound(count, 0, K - 1);
        Report memory report = _report(subject, 1);
        bytes memory sigs = signSorted(_subset(seed, k), router.reportDigest(report));
        vm.expectRevert(abi.encodeWithSelector(OracleRouter.TooFewSignatures.selector, k, uint256(K)));
        router.submit(report, sigs);
    }

    /// @dev The high-s twin (r, n - s, other parity) of a member's signature recovers the same member.
    ///      In the 64-byte compact form n - s almost always has bit 255 set, which collides with the
    ///      parity bit, so the twin cannot even be written down faithfully: whatever the router reads
    ///      from it, it must not accept a second encoding of the member's signature.
    function testFuzz_highSTwinIsRefused(uint256 seed, bytes32 subject, uint8 position) public {
        Report memory report = _report(subject, 1);
        bytes32 digest = router.reportDigest(report);
        uint256[] memory sorted = sortByAddress(_subset(seed, K));
        uint256 bad = bound(position, 0, K - 1);
        bytes memory sigs;
        for (uint256 i = 0; i < K; ++i) {
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(sorted[i], digest);
            if (i == bad) {
                (v, s) = (v == 27 ? 28 : 27, bytes32(SECP256K1_N - uint256(s)));
                assertEq(ecrecover(digest, v, r, s), vm.addr(sorted[i]), "the twin recovers the member");
            }
            sigs = bytes.concat(sigs, compact(v, r, s));
        }
        vm.expectRevert();
        router.submit(report, sigs);
        (uint64 latestEpoch,,,,) = router.latest(subject);
        assertEq(uint256(latestEpoch), 0, "nothing accepted");
    }

    /// @dev An s above n/2 that fits the compact form (below 2^255) is refused as InvalidSignature
    ///      before the signer is even looked at, whatever address it recovers.
    function testFuzz_highSIsRefused(uint256 seed, bytes32 subject, bytes32 r, uint256 s, bool parity) public {
        s = bound(s, HALF_N + 1, (uint256(1) << 255) - 1);
        Report memory report = _report(subject, 1);
        uint256[] memory sorted = sortByAddress(_subset(seed, K));
        bytes memory sigs = compact(parity ? 28 : 27, r, bytes32(s));
        for (uint256 i = 1; i < K; ++i) {
            sigs = bytes.concat(sigs, signCompact(sorted[i], router.reportDigest(report)));
        }
        vm.expectRevert(abi.encodeWithSelector(OracleRouter.InvalidSignature.selector, 0));
        router.submit(report, sigs);
    }

    /// @dev The other recovery id (v 28 for 27 and back) recovers some other address, never the member:
    ///      refused as a non-member or, if that address happens to sort lower, as out of order.
    function testFuzz_wrongRecoveryIdIsRefused(uint256 seed, bytes32 subject, uint8 position) public {
        Report memory report = _report(subject, 1);
        bytes32 digest = router.reportDigest(report);
        uint256[] memory sorted = sortByAddress(_subset(seed, K));
        uint256 bad = bound(position, 0, K - 1);
        bytes memory sigs;
        for (uint256 i = 0; i < K; ++i) {
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(sorted[i], digest);
            if (i == bad) v = v == 27 ? 28 : 27;
            sigs = bytes.concat(sigs, compact(v, r, s));
        }
        vm.expectRevert();
        router.submit(report, sigs);
        (uint64 latestEpoch,,,,) = router.latest(subject);
        assertEq(uint256(latestEpoch), 0, "nothing accepted");
    }

    /// @dev A 65-byte (r, s, v) signature, whatever v says (27, 28, 0, 1, 35, ...), is not the
    ///      router's format: lengths that are not a multiple of 64 are refused outright.
    function testFuzz_sixtyFiveByteSignaturesAreRefused(uint256 seed, bytes32 subject, uint8 v) public {
        Report memory report = _report(subject, 1);
        bytes32 digest = router.reportDigest(report);
        uint256[] memory sorted = sortByAddress(_subset(seed, K));
        bytes memory sigs;
        for (uint256 i = 0; i < K; ++i) {
            (, bytes32 r, bytes32 s) = vm.sign(sorted[i], digest);
            sigs = bytes.concat(sigs, abi.encodePacked(r, s, v));
        }
        vm.expectRevert(abi.encodeWithSelector(OracleRouter.MalformedSignatures.selector, sigs.length));
        router.submit(report, sigs);
    }

    /// @dev One member's signature twice (k signatures, k - 1 distinct members) is refused wherever the
    ///      duplicate stands.
    function testFuzz_duplicateSignerIsRefused(uint256 seed, bytes32 subject, uint8 position) public {
        Report memory report = _report(subject, 1);
        bytes32 digest = router.reportDigest(report);
        uint256[] memory sorted = sortByAddress(_subset(seed, K - 1));
        uint256 dup = bound(position, 0, K - 2);
        bytes memory sigs;
        for (uint256 i = 0; i < K - 1; ++i) {
            sigs = bytes.concat(sigs, signCompact(sorted[i], digest));
            if (i == dup) sigs = bytes.concat(sigs, signCompact(sorted[i], digest));
        }
        vm.expectRevert(abi.encodeWithSelector(OracleRouter.SignersNotAscending.selector, dup + 1));
        router.submit(report, sigs);
    }

    function testFuzz_nonMemberIsRefused(uint256 seed, bytes32 subject, uint256 outsider) public {
        outsider = bound(outsider, 1, SECP256K1_N - 1);
        for (uint256 i = 0; i < N; ++i) {
            vm.assume(outsider != keys[i]);
        }
        Report memory report = _report(subject, 1);
        uint256[] memory signing = _subset(seed, K);
        signing[0] = outsider; // k signatures, only k - 1 from members
        bytes memory sigs = signSorted(signing, router.reportDigest(report));
        vm.expectRevert(abi.encodeWithSelector(OracleRouter.UnknownSigner.selector, vm.addr(outsider)));
        router.submit(report, sigs);
    }

    function testFuzz_signatureOverAnotherReportIsRefused(uint256 seed, bytes32 subject, int256 other) public {
        Report memory report = _report(subject, 1);
        Report memory signed = _report(subject, 1);
        signed.value = bound(uint256(other), 0, 2) == 1 ? int256(0) : int256(2);
        bytes memory sigs = signSorted(_subset(seed, K), router.reportDigest(signed));
        vm.expectRevert();
        router.submit(report, sigs);
    }
}
