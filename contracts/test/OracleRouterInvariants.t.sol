// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {CheatBase, Test} from "./utils/Test.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Drives a real OracleRouter (which it owns) with random reports and governance. Every report
///         is signed with `vm.sign` by a random choice of keys: distinct members, random multisets of
///         members and outsiders (duplicates included), sorted or not. The handler keeps its own model
///         of the signer set, threshold, pending changes and latest epochs, built only from what the
///         timelock allows, and counts every disagreement with the router.
contract RouterHandler is RouterFixture {
    uint256 internal constant KEYS = 10; // memberKey(0 .. 9); 0 .. 4 start as members
    uint256 internal constant ADDABLE = 8; // keys 8 and 9 are never scheduled: permanent outsiders
    uint256 internal constant SUBJECTS = 4;
    uint64 internal constant INITIAL_DELAY = 1 days;
    uint64 internal constant MAX_EPOCH = 1000; // cold-chain epoch bound
    uint64 internal constant MAX_REVISIONS = 1000; // drought epoch = month index × 1000 + revision

    struct Pending {
        bytes32 id;
        uint8 action;
        address target;
        uint8 threshold;
        uint64 activatesAt; // scheduled time + the delay in force then, by the model
    }

    OracleRouter public router;
    uint256[] internal _keys;
    address[] public keyAddress; // vm.addr(_keys[i]), computed once

    // The handler's model of the router.
    mapping(address => bool) public ghostMember;
    uint256 public ghostSignerCount;
    uint8 public ghostThreshold;
    mapping(bytes32 => uint64) public ghostLatest;
    uint64 public ghostDelay = INITIAL_DELAY;
    uint64 public ghostPendingDelay;
    uint64 public ghostPendingDelayAt; // 0 = no shorter delay scheduled
    mapping(bytes32 => mapping(uint64 => uint64)) public ghostCorrection; // subject => month => epoch
    Pending[] internal _pending;

    // Outcomes and violations.
    uint256 public accepted;
    uint256 public refused;
    uint256 public acceptedWithoutQuorum; // accepted with fewer than k distinct members' signatures
    uint256 public staleAccepted; // accepted at or below the latest epoch, and not a valid correction
    uint256 public corrections; // drought corrections of an earlier month accepted
    uint256 public epochRegressions; // a subject's latest epoch went down
    uint256 public earlyActivations; // a governance change took effect before its timelock
    uint256 public activations;
    uint256 public unexpected; // any other outcome the model did not predict
    mapping(bytes32 => uint64) internal _observedLatest;

    constructor() {
        (router, _keys) = deployRouter(5, 3);
        for (uint256 i = 5; i < KEYS; ++i) {
            _keys.push(memberKey(i));
        }
        for (uint256 i = 0; i < KEYS; ++i) {
            keyAddress.push(vm.addr(_keys[i]));
        }
        for (uint256 i = 0; i < 5; ++i) {
            ghostMember[keyAddress[i]] = true;
        }
        ghostSignerCount = 5;
        ghostThreshold = 3;
        router.setModelDelay(INITIAL_DELAY);
    }

    function subject(uint256 i) public pure returns (bytes32) {
        return keccak256(abi.encode("subject", i % SUBJECTS));
    }

    function pendingCount() external view returns (uint256) {
        return _pending.length;
    }

    function pending(uint256 i) external view returns (Pending memory) {
        return _pending[i];
    }

    // ------------------------------------------------------------------ reports

    /// @notice A report for one of four subjects: 0 and 1 take cold-chain verdicts (epoch ≤ 1000), 2 and
    ///         3 drought scores (epoch = month index × 1000 + revision, at most this month's). One call in
    ///         four reuses an epoch at or below the latest: stale, or for drought possibly a correction
    ///         of an earlier month, which may be accepted but must leave `latest` alone.
    function submit(uint256 subjectSeed, uint256 epochSeed, uint256 mode, uint256 pickSeed, uint256 count) external {
        bytes32 s = subject(subjectSeed);
        bool drought = subjectSeed % SUBJECTS >= 2;
        uint64 latest = ghostLatest[s];
        uint64 epoch = drought ? _droughtEpoch(latest, epochSeed) : _coldChainEpoch(latest, epochSeed);
        Report memory report = drought
            ? droughtReport(s, int256(epochSeed % 5_000_001), epoch)
            : coldChainReport(s, int256(epochSeed % 3), epoch);
        _submit(report, _pick(mode % 5, pickSeed, count));
        _checkEpochs();
    }

    /// @notice A drought report for a month before the subject's latest, signed by k or more distinct
    ///         members: a correction (accepted when above that month's corrections; `latest` stays).
    function correct(uint256 subjectSeed, uint256 epochSeed, uint256 pickSeed, uint256 count) external {
        bytes32 s = subject(2 + subjectSeed % 2);
        uint64 latestMonth = ghostLatest[s] / MAX_REVISIONS;
        if (latestMonth < 4) return; // no drought report yet
        uint64 epoch = (latestMonth - 1 - uint64(epochSeed % 3)) * MAX_REVISIONS + uint64((epochSeed >> 8) % 4);
        _submit(droughtReport(s, int256(epochSeed % 5_000_001), epoch), _pick(0, pickSeed, count));
        _checkEpochs();
    }

    /// @dev Submit `report` signed by the keys at indices `signing`, and judge the outcome by the model:
    ///      ascending distinct members, at least k of them, and an epoch above the latest (or, for
    ///      drought, a correction of an earlier month above that month's corrections).
    function _submit(Report memory report, uint256[] memory signing) internal {
        bytes memory sigs;
        bytes32 digest = router.reportDigest(report);
        for (uint256 i = 0; i < signing.length; ++i) {
            sigs = bytes.concat(sigs, signCompact(_keys[signing[i]], digest));
        }
        bool signed = _validlySigned(signing);
        bytes32 s = report.subject;
        uint64 latest = ghostLatest[s];
        uint64 month = report.epoch / MAX_REVISIONS;
        bool correction = report.kind == 1 && report.epoch <= latest && month < latest / MAX_REVISIONS
            && report.epoch > ghostCorrection[s][month];

        try router.submit(report, sigs) {
            ++accepted;
            if (_distinctMembers(signing) < ghostThreshold) ++acceptedWithoutQuorum;
            if (!signed) ++unexpected;
            if (report.epoch > latest) {
                ghostLatest[s] = report.epoch;
            } else if (correction) {
                ++corrections; // accepted, and `latest` must not move (checked by the invariant)
                ghostCorrection[s][month] = report.epoch;
            } else {
                ++staleAccepted;
            }
        } catch {
            ++refused;
            if (signed && report.epoch > latest) ++unexpected;
        }
    }

    function _validlySigned(uint256[] memory signing) internal view returns (bool) {
        if (signing.length < ghostThreshold) return false;
        for (uint256 i = 0; i < signing.length; ++i) {
            if (i > 0 && keyAddress[signing[i]] <= keyAddress[signing[i - 1]]) return false;
            if (!ghostMember[keyAddress[signing[i]]]) return false;
        }
        return true;
    }

    function _coldChainEpoch(uint64 latest, uint256 seed) internal pure returns (uint64 epoch) {
        if (seed % 4 == 0) return uint64(bound(seed >> 8, 0, latest)); // stale (or a replay of the latest)
        epoch = latest + 1 + uint64(seed % 3);
        if (epoch > MAX_EPOCH) epoch = MAX_EPOCH;
    }

    function _droughtEpoch(uint64 latest, uint256 seed) internal view returns (uint64 epoch) {
        uint64 current = uint64(router.monthIndex(block.timestamp));
        uint64 latestMonth = latest / MAX_REVISIONS;
        if (seed % 4 == 0) {
            // At or below the latest: a month up to 3 before the latest's, revision 0 .. 3.
            if (latest == 0) return 0;
            uint64 m = latestMonth - uint64((seed >> 8) % 4);
            epoch = m * MAX_REVISIONS + uint64((seed >> 16) % 4);
            return epoch > latest ? latest : epoch;
        }
        if (latest == 0) return (current - 1 - uint64(seed % 3)) * MAX_REVISIONS;
        // Fresh: the next revision of the latest month, or a later month (never past this month).
        epoch = (seed >> 8) % 2 == 0 ? latest + 1 : (latestMonth + 1 + uint64((seed >> 16) % 2)) * MAX_REVISIONS;
        uint64 cap = current * MAX_REVISIONS + MAX_REVISIONS - 1;
        if (epoch > cap) epoch = cap;
    }

    /// @dev Key indices. mode 0 and 1: distinct current members, k - 1 or more, sorted; 2: the same
    ///      with k - 1 members, one of them signing twice; 3: any keys (members, outsiders, duplicates),
    ///      sorted; 4: any keys in random order.
    function _pick(uint256 mode, uint256 seed, uint256 count) internal view returns (uint256[] memory out) {
        if (mode <= 2) {
            uint256[] memory pool = new uint256[](KEYS);
            uint256 n = 0;
            for (uint256 i = 0; i < KEYS; ++i) {
                if (ghostMember[keyAddress[i]]) pool[n++] = i;
            }
            // mode 2: k - 1 distinct members, so the duplicate below makes exactly k signatures.
            out = new uint256[](
                mode == 2 ? (ghostThreshold - 1 < n ? ghostThreshold - 1 : n) : bound(count, ghostThreshold - 1, n)
            );
            for (uint256 i = 0; i < out.length; ++i) {
                uint256 j = uint256(keccak256(abi.encode(seed, i))) % n;
                out[i] = pool[j];
                pool[j] = pool[--n];
            }
        } else {
            out = new uint256[](bound(count, 0, 8));
            for (uint256 i = 0; i < out.length; ++i) {
                out[i] = uint256(keccak256(abi.encode(seed, i))) % KEYS;
            }
        }
        if (mode == 2 && out.length > 0) {
            uint256[] memory twice = new uint256[](out.length + 1);
            for (uint256 i = 0; i < out.length; ++i) {
                twice[i] = out[i];
            }
            twice[out.length] = out[seed % out.length];
            out = twice;
        }
        if (mode != 4) {
            for (uint256 i = 1; i < out.length; ++i) {
                uint256 v = out[i];
                uint256 j = i;
                while (j > 0 && keyAddress[out[j - 1]] > keyAddress[v]) {
                    out[j] = out[j - 1];
                    --j;
                }
                out[j] = v;
            }
        }
    }

    /// @dev Distinct current members among the signers, counted from the model, not the router.
    function _distinctMembers(uint256[] memory signing) internal view returns (uint256 n) {
        for (uint256 i = 0; i < signing.length; ++i) {
            address a = keyAddress[signing[i]];
            if (!ghostMember[a]) continue;
            bool seen = false;
            for (uint256 j = 0; j < i; ++j) {
                if (keyAddress[signing[j]] == a) seen = true;
            }
            if (!seen) ++n;
        }
    }

    function _checkEpochs() internal {
        for (uint256 i = 0; i < SUBJECTS; ++i) {
            bytes32 s = subject(i);
            (uint64 epoch,,,,) = router.latest(s);
            if (epoch < _observedLatest[s]) ++epochRegressions;
            _observedLatest[s] = epoch;
        }
    }

    // ------------------------------------------------------------------ governance (owner = this handler)

    /// @dev With the delay at 0 a scheduled change applies at once (and nothing is pending).
    function scheduleAddSigner(uint256 keySeed) external {
        address target = keyAddress[keySeed % ADDABLE];
        bytes32 id = router.changeId(router.ADD_SIGNER(), target);
        bool predicted = !ghostMember[target] && _indexOf(id) == type(uint256).max;
        try router.scheduleAddSigner(target) returns (bytes32 got) {
            if (!predicted || got != id) ++unexpected;
            if (ghostDelay == 0) {
                ghostMember[target] = true;
                ++ghostSignerCount;
            } else {
                _pending.push(Pending(id, router.ADD_SIGNER(), target, 0, uint64(block.timestamp) + ghostDelay));
            }
        } catch {
            if (predicted) ++unexpected;
        }
    }

    function scheduleThreshold(uint256 seed) external {
        uint8 t = uint8(bound(seed, 1, 8));
        bytes32 id = router.changeId(router.SET_THRESHOLD(), address(0));
        bool predicted = _indexOf(id) == type(uint256).max && (ghostDelay != 0 || t <= ghostSignerCount);
        try router.scheduleThreshold(t) returns (bytes32 got) {
            if (!predicted || got != id) ++unexpected;
            if (ghostDelay == 0) {
                ghostThreshold = t;
            } else {
                _pending.push(Pending(id, router.SET_THRESHOLD(), address(0), t, uint64(block.timestamp) + ghostDelay));
            }
        } catch {
            if (predicted) ++unexpected;
        }
    }

    /// @dev A longer delay applies at once; a shorter one only after the delay in force, so lowering it
    ///      cannot shorten the wait of what is scheduled or of what will be.
    function setModelDelay(uint256 seed) external {
        uint64 d = uint64(bound(seed, 0, 3 days));
        router.setModelDelay(d);
        if (d >= ghostDelay) {
            ghostDelay = d;
            (ghostPendingDelay, ghostPendingDelayAt) = (0, 0);
        } else {
            (ghostPendingDelay, ghostPendingDelayAt) = (d, uint64(block.timestamp) + ghostDelay);
        }
    }

    function applyModelDelay() external {
        bool due = ghostPendingDelayAt != 0 && block.timestamp >= ghostPendingDelayAt;
        try router.applyModelDelay() {
            ++activations;
            if (!due) ++earlyActivations;
            ghostDelay = ghostPendingDelay;
            (ghostPendingDelay, ghostPendingDelayAt) = (0, 0);
        } catch {
            if (due) ++unexpected;
        }
    }

    /// @dev Anyone may activate: the handler tries pending changes whether or not their time has come.
    function activateGovernance(uint256 seed) external {
        if (_pending.length == 0) return;
        uint256 idx = seed % _pending.length;
        Pending memory p = _pending[idx];
        bool due = block.timestamp >= p.activatesAt;
        bool valid = p.action != router.SET_THRESHOLD() || p.threshold <= ghostSignerCount;
        try router.activateGovernance(p.id) {
            ++activations;
            if (!due) ++earlyActivations;
            if (!valid) ++unexpected;
            _remove(idx);
            if (p.action == router.ADD_SIGNER()) {
                ghostMember[p.target] = true;
                ++ghostSignerCount;
            } else {
                ghostThreshold = p.threshold;
            }
        } catch {
            if (due && valid) ++unexpected;
        }
    }

    function cancelGovernance(uint256 seed) external {
        if (_pending.length == 0) return;
        uint256 idx = seed % _pending.length;
        try router.cancelGovernance(_pending[idx].id) {
            _remove(idx);
        } catch {
            ++unexpected;
        }
    }

    function removeSigner(uint256 keySeed) external {
        address target = keyAddress[keySeed % KEYS];
        bool predicted = ghostMember[target] && ghostSignerCount - 1 >= ghostThreshold;
        try router.removeSigner(target) {
            if (!predicted) ++unexpected;
            ghostMember[target] = false;
            --ghostSignerCount;
        } catch {
            if (predicted) ++unexpected;
        }
    }

    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + bound(seconds_, 0, 2 days));
    }

    function _indexOf(bytes32 id) internal view returns (uint256) {
        for (uint256 i = 0; i < _pending.length; ++i) {
            if (_pending[i].id == id) return i;
        }
        return type(uint256).max;
    }

    function _remove(uint256 idx) internal {
        _pending[idx] = _pending[_pending.length - 1];
        _pending.pop();
    }
}

/// @notice Invariants of the router under RouterHandler: 50 runs × 200 calls (foundry.toml).
contract OracleRouterInvariantsTest is Test {
    RouterHandler internal handler;
    OracleRouter internal router;

    function setUp() public {
        vm.warp(1_750_000_000);
        handler = new RouterHandler();
        router = handler.router();
        bytes4[] memory selectors = new bytes4[](10);
        selectors[7] = RouterHandler.correct.selector;
        selectors[8] = RouterHandler.setModelDelay.selector;
        selectors[9] = RouterHandler.applyModelDelay.selector;
        selectors[0] = RouterHandler.submit.selector;
        selectors[1] = RouterHandler.scheduleAddSigner.selector;
        selectors[2] = RouterHandler.scheduleThreshold.selector;
        selectors[3] = RouterHandler.activateGovernance.selector;
        selectors[4] = RouterHandler.cancelGovernance.selector;
        selectors[5] = RouterHandler.removeSigner.selector;
        selectors[6] = RouterHandler.warp.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// @notice A report is accepted only with k distinct member signatures, k and membership as the
    ///         timelock allows them; and the router decides every report as that rule predicts.
    function invariant_reportAcceptedOnlyWithKDistinctMembers() public {
        assertEq(handler.acceptedWithoutQuorum(), 0, "report accepted without k distinct members");
        assertEq(handler.unexpected(), 0, "router disagreed with the k-of-n model");
    }

    /// @notice A stale epoch never overwrites a newer one: each subject's latest epoch only rises and
    ///         equals the highest epoch accepted for it.
    function invariant_staleEpochNeverOverwrites() public {
        assertEq(handler.staleAccepted(), 0, "stale epoch accepted");
        assertEq(handler.epochRegressions(), 0, "latest epoch went down");
        for (uint256 i = 0; i < 4; ++i) {
            bytes32 s = handler.subject(i);
            (uint64 epoch,,,,) = router.latest(s);
            assertEq(uint256(epoch), uint256(handler.ghostLatest(s)), "latest epoch is the highest accepted");
        }
    }

    /// @notice Governance changes never take effect before their timelock: the signer set, threshold
    ///         and delay are exactly what activations at or after their time produced, every pending
    ///         change waits for its scheduled time + the delay in force when it was scheduled, and a
    ///         shorter delay waits out the current one.
    function invariant_governanceWaitsForTimelock() public {
        assertEq(handler.earlyActivations(), 0, "change activated before its timelock");
        for (uint256 i = 0; i < 10; ++i) {
            address a = handler.keyAddress(i);
            assertEq(router.isSigner(a), handler.ghostMember(a), "signer set differs from timelocked changes");
        }
        assertEq(uint256(router.threshold()), uint256(handler.ghostThreshold()), "threshold differs");
        uint256 n = handler.pendingCount();
        assertEq(router.pendingGovernance().length, n, "pending changes");
        for (uint256 i = 0; i < n; ++i) {
            RouterHandler.Pending memory p = handler.pending(i);
            assertEq(
                uint256(router.pendingChange(p.id).activatesAt),
                uint256(p.activatesAt),
                "pending change activates after the delay"
            );
        }
        assertEq(uint256(router.modelDelay()), uint256(handler.ghostDelay()), "delay");
        (uint64 pendingDelay, uint64 pendingAt) = router.pendingModelDelay();
        assertEq(uint256(pendingDelay), uint256(handler.ghostPendingDelay()), "pending shorter delay");
        assertEq(uint256(pendingAt), uint256(handler.ghostPendingDelayAt()), "shorter delay waits out the current");
    }

    /// @notice The signer count never drops below the threshold.
    function invariant_signerCountCoversThreshold() public {
        assertGe(uint256(router.signerCount()), uint256(router.threshold()), "fewer signers than threshold");
        assertEq(uint256(router.signerCount()), handler.ghostSignerCount(), "signer count");
        assertEq(router.signers().length, uint256(router.signerCount()), "signer list length");
    }
}
