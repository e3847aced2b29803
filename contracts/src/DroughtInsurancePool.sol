// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IOracleRouter, IReportSubscriber, Report, ReportKinds} from "./interfaces/IOracleRouter.sol";

/// @title DroughtInsurancePool
/// @notice Parametric drought cover paid in one ERC-20. The insurer (owner) writes policies on region
///         subjects; the first accepted DROUGHT_SEVERITY report for the region observed inside a policy's
///         coverage window (coverageStart, coverageEnd] with value above the trigger pays the insured
///         automatically. A policy pays at most once: its coverage window is its one period.
/// @dev Payout = floor(limit * (value - trigger) / (exit - trigger)), 0 at or below the trigger and
///      `limit` at or above the exit (see `payoutFor`; `models/payout.py` is the same rule in Python).
///      If the pool cannot pay, the policy is marked Owed (event PayoutFailed) and anyone can settle it
///      with `claimOwed` once the pool is funded; the router's forwarding never reverts because of it.
contract DroughtInsurancePool is IReportSubscriber, Ownable {
    using SafeERC20 for IERC20;

    enum Status {
        None,
        Active,
        Paid,
        Owed,
        Closed
    }

    struct Policy {
        address insured;
        uint64 coverageStart;
        Status status;
        uint64 coverageEnd;
        int64 trigger;
        int64 exit;
        uint128 limit;
        uint128 payout;
        bytes32 region;
    }

    /// @notice Most active policies per region, so one report's forwarding has a bounded cost
    ///         (about 50k gas per paid policy, within the router's 1M-gas subscriber budget).
    uint256 public constant MAX_POLICIES_PER_REGION = 16;

    IOracleRouter public immutable router;
    IERC20 public immutable token;

    uint256 public policyCount;
    /// @notice Sum of payouts marked Owed and not yet claimed; `withdraw` keeps this much.
    uint256 public totalOwed;
    mapping(uint256 => Policy) private _policies;
    /// @dev region => ids of its Active policies (bounded by MAX_POLICIES_PER_REGION).
    mapping(bytes32 => uint256[]) private _active;
    mapping(bytes32 => bool) public subscribedRegion;

    event PolicyCreated(
        uint256 indexed policyId,
        address indexed insured,
        bytes32 indexed region,
        uint64 coverageStart,
        uint64 coverageEnd,
        int64 trigger,
        int64 exit,
        uint128 limit
    );
    /// @dev `epoch` is the report that paid; 0 when the payout was a late `claimOwed`.
    event PayoutSent(uint256 indexed policyId, address indexed insured, uint256 amount, uint64 epoch);
    event PayoutFailed(uint256 indexed policyId, address indexed insured, uint256 amount, uint64 epoch);
    event PolicyClosed(uint256 indexed policyId);

    error NotRouter(address caller);
    error BadTerms(string why);
    error TooManyPolicies(bytes32 region);
    error NotOwed(uint256 policyId);
    error NotClosable(uint256 policyId);
    error WouldUnderfundOwed(uint256 balance, uint256 owed, uint256 amount);

    constructor(IOracleRouter router_, IERC20 token_) {
        router = router_;
        token = token_;
    }

    /// @notice The payout rule: floor(limit * (value - trigger) / (exit - trigger)) clamped to [0, limit].
    /// @dev Pure, so anyone (and the tests) can check it. The products fit in 256 bits because
    ///      limit < 2^128 and (value - trigger) < 2^64 on the only branch that multiplies.
    function payoutFor(int256 value, int64 trigger, int64 exit, uint128 limit) public pure returns (uint256) {
        if (exit <= trigger) revert BadTerms("exit must exceed trigger");
        if (value <= trigger) return 0;
        if (value >= exit) return limit;
        uint256 span = uint256(int256(exit) - int256(trigger));
        uint256 over = uint256(value - int256(trigger));
        return (uint256(limit) * over) / span;
    }

    /// @notice Write a policy (insurer only). Values use the report's fixed point (10**6).
    /// @param coverageStart coverageEnd unix seconds; reports with observedAt in (start, end] count.
    function createPolicy(
        address insured,
        bytes32 regionSubject,
        uint64 coverageStart,
        uint64 coverageEnd,
        int64 trigger,
        int64 exit,
        uint128 limit
    ) external onlyOwner returns (uint256 policyId) {
        if (insured == address(0)) revert BadTerms("insured is zero");
        if (coverageEnd <= coverageStart) revert BadTerms("coverage end must follow start");
        if (trigger < 0 || exit <= trigger) revert BadTerms("need 0 <= trigger < exit");
        if (limit == 0) revert BadTerms("limit is zero");
        uint256[] storage active = _active[regionSubject];
        if (active.length >= MAX_POLICIES_PER_REGION) revert TooManyPolicies(regionSubject);

        policyId = ++policyCount;
        _policies[policyId] = Policy({
            insured: insured,
            coverageStart: coverageStart,
            status: Status.Active,
            coverageEnd: coverageEnd,
            trigger: trigger,
            exit: exit,
            limit: limit,
            payout: 0,
            region: regionSubject
        });
        active.push(policyId);
        if (!subscribedRegion[regionSubject]) {
            subscribedRegion[regionSubject] = true;
            router.subscribe(regionSubject);
        }
        emit PolicyCreated(policyId, insured, regionSubject, coverageStart, coverageEnd, trigger, exit, limit);
    }

    function policy(uint256 policyId) external view returns (Policy memory) {
        return _policies[policyId];
    }

    function activePolicies(bytes32 region) external view returns (uint256[] memory) {
        return _active[region];
    }

    /// @inheritdoc IReportSubscriber
    function onReport(Report calldata report) external override {
        if (msg.sender != address(router)) revert NotRouter(msg.sender);
        if (report.kind != ReportKinds.DROUGHT_SEVERITY) return;
        uint256[] storage active = _active[report.subject];
        uint256 i = 0;
        while (i < active.length) {
            uint256 id = active[i];
            Policy storage p = _policies[id];
            if (report.observedAt <= p.coverageStart || report.observedAt > p.coverageEnd) {
                ++i;
                continue;
            }
            uint256 amount = payoutFor(report.value, p.trigger, p.exit, p.limit);
            if (amount == 0) {
                ++i;
                continue;
            }
            // Settle the policy before moving tokens: it can never pay twice.
            p.payout = uint128(amount);
            _removeActive(active, i);
            if (_tryTransfer(p.insured, amount)) {
                p.status = Status.Paid;
                emit PayoutSent(id, p.insured, amount, report.epoch);
            } else {
                p.status = Status.Owed;
                totalOwed += amount;
                emit PayoutFailed(id, p.insured, amount, report.epoch);
            }
        }
    }

    /// @notice Pay an Owed policy once the pool holds enough. Anyone may call; the insured gets paid.
    function claimOwed(uint256 policyId) external {
        Policy storage p = _policies[policyId];
        if (p.status != Status.Owed) revert NotOwed(policyId);
        p.status = Status.Paid;
        totalOwed -= p.payout;
        token.safeTransfer(p.insured, p.payout);
        emit PayoutSent(policyId, p.insured, p.payout, 0);
    }

    /// @notice Close an Active policy whose coverage has ended, freeing its region slot (insurer only).
    function closeExpired(uint256 policyId) external onlyOwner {
        Policy storage p = _policies[policyId];
        if (p.status != Status.Active || block.timestamp <= p.coverageEnd) revert NotClosable(policyId);
        p.status = Status.Closed;
        uint256[] storage active = _active[p.region];
        for (uint256 i = 0; i < active.length; ++i) {
            if (active[i] == policyId) {
                _removeActive(active, i);
                break;
            }
        }
        emit PolicyClosed(policyId);
    }

    /// @notice Take capital out (insurer only); never below what is owed to insureds.
    function withdraw(address to, uint256 amount) external onlyOwner {
        uint256 balance = token.balanceOf(address(this));
        if (amount > balance || balance - amount < totalOwed) {
            revert WouldUnderfundOwed(balance, totalOwed, amount);
        }
        token.safeTransfer(to, amount);
    }

    function _removeActive(uint256[] storage active, uint256 i) private {
        active[i] = active[active.length - 1];
        active.pop();
    }

    /// @dev A failing transfer (e.g. the pool is short) must not revert the whole report for the
    ///      other policies, so we call the token directly and report success instead of reverting.
    function _tryTransfer(address to, uint256 amount) private returns (bool) {
        if (token.balanceOf(address(this)) < amount) return false;
        (bool ok, bytes memory ret) = address(token).call(abi.encodeCall(IERC20.transfer, (to, amount)));
        return ok && (ret.length == 0 || abi.decode(ret, (bool)));
    }
}
