// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {CheatBase} from "./Test.sol";
import {OracleRouter} from "../../src/OracleRouter.sol";
import {Report, ReportKinds} from "../../src/interfaces/IOracleRouter.sol";

/// @notice Signing helpers for the real OracleRouter: members are `vm.addr` of private keys, reports are
///         signed with `vm.sign` over `router.reportDigest(report)` and encoded as the router wants them
///         (64-byte EIP-2098 compact signatures, concatenated in strictly ascending signer order).
abstract contract RouterFixture is CheatBase {
    bytes32 internal constant DROUGHT_MODEL = keccak256("forge drought model");
    bytes32 internal constant COLDCHAIN_MODEL = keccak256("forge cold-chain model");

    /// @notice A private key for member `i` (distinct, nonzero, below the curve order).
    function memberKey(uint256 i) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode("oracle member", i))) % (SECP256K1_N - 1) + 1;
    }

    /// @notice A router owned by the caller with `n` members (keys memberKey(0 .. n-1)), threshold `k`,
    ///         both report models approved and the timelock unarmed (arm it with setModelDelay).
    function deployRouter(uint256 n, uint8 k) internal returns (OracleRouter router, uint256[] memory keys) {
        keys = new uint256[](n);
        address[] memory members = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            keys[i] = memberKey(i);
            members[i] = vm.addr(keys[i]);
        }
        router = new OracleRouter(members, k);
        router.scheduleModel(ReportKinds.DROUGHT_SEVERITY, DROUGHT_MODEL, bytes32(0));
        router.scheduleModel(ReportKinds.COLDCHAIN_VERDICT, COLDCHAIN_MODEL, bytes32(0));
    }

    /// @notice The 64-byte compact form of (v, r, s): r ‖ ((v - 27) << 255 | s).
    function compact(uint8 v, bytes32 r, bytes32 s) internal pure returns (bytes memory) {
        return abi.encodePacked(r, bytes32(uint256(v - 27) << 255 | uint256(s)));
    }

    function signCompact(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return compact(v, r, s);
    }

    /// @notice Sign `digest` with every key and concatenate in ascending signer order (as the router
    ///         requires). Keys must be distinct signers for the result to be accepted.
    function signSorted(uint256[] memory keys, bytes32 digest) internal pure returns (bytes memory sigs) {
        uint256[] memory sorted = sortByAddress(keys);
        for (uint256 i = 0; i < sorted.length; ++i) {
            sigs = bytes.concat(sigs, signCompact(sorted[i], digest));
        }
    }

    /// @notice `keys` sorted by their address, ascending (insertion sort: n is small).
    function sortByAddress(uint256[] memory keys) internal pure returns (uint256[] memory sorted) {
        sorted = new uint256[](keys.length);
        for (uint256 i = 0; i < keys.length; ++i) {
            uint256 key = keys[i];
            address a = vm.addr(key);
            uint256 j = i;
            while (j > 0 && vm.addr(sorted[j - 1]) > a) {
                sorted[j] = sorted[j - 1];
                --j;
            }
            sorted[j] = key;
        }
    }

    /// @notice A drought report; `epoch` is month index × 1000 + revision (`OracleRouter.monthIndex`).
    function droughtReport(bytes32 subject, int256 value, uint64 epoch) internal pure returns (Report memory) {
        return Report({
            subject: subject,
            kind: ReportKinds.DROUGHT_SEVERITY,
            value: value,
            epoch: epoch,
            observedAt: 1_700_000_000,
            inputsRoot: keccak256(abi.encode("inputs", subject, epoch)),
            modelId: DROUGHT_MODEL
        });
    }

    function coldChainReport(bytes32 subject, int256 verdict, uint64 epoch) internal pure returns (Report memory) {
        return Report({
            subject: subject,
            kind: ReportKinds.COLDCHAIN_VERDICT,
            value: verdict,
            epoch: epoch,
            observedAt: 1_700_000_000,
            inputsRoot: keccak256(abi.encode("inputs", subject, epoch)),
            modelId: COLDCHAIN_MODEL
        });
    }
}
