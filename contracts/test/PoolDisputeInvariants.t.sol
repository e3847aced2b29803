// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {DroughtInsurancePool} from "../src/DroughtInsurancePool.sol";
import {FreezableToken} from "../src/test/FreezableToken.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Drives a DroughtInsurancePool with liveness windows and disputes through a real OracleRouter:
///         products with windows of 0, 1 h or 1 day are sold on one region, reports and their revisions
///         arrive for three months, watchers dispute the revision held (in or out of its window, twice),
///         anyone settles, claims and resolves disputes (early, upheld by a replacement, rejected after
///         the answer window, twice), the insurer changes the bond and reward, and time moves on.
///         Around every call it notes which months were frozen before and after, and what each policy's
///         period had been paid: a payout for a month frozen throughout a call is a violation.
contract DisputeHandler is RouterFixture {
    uint256 public constant MONTHS = 3;
    uint256 internal constant MAX_POLICIES = 8;
    uint8 internal constant K = 2;
    uint64 internal constant OBSERVED = 1_700_000_000;

    OracleRouter public router;
    DroughtInsurancePool public pool;
    FreezableToken public token;
    uint256[] internal _keys;
    bytes32 public constant REGION = keccak256("region:forge-disputes");
    uint256 public baseMonth;
    uint256[] public policyIds;

    /// @notice Disputes filed (subject is REGION): their epochs, and whether each was settled.
    uint64[] public disputed;
    mapping(uint64 => bool) public settledOnce;
    /// @notice Ghost books of the bonds: in when filed, out when settled, and what is open.
    uint256 public bondsIn;
    uint256 public bondsOut;
    uint256 public ghostOpen;
    /// @notice Payouts for a month that was frozen before and after the call (must stay 0).
    uint256 public paidWhileFrozen;
    /// @notice Calls whose outcome the pool's rules do not allow (must stay 0).
    uint256 public unexpected;
    uint256 public upheld;
    uint256 public rejected;

    bool[MONTHS] internal _frozenBefore;
    mapping(uint256 => mapping(uint256 => uint256)) internal _paidBefore;

    constructor() {
        vm.warp(OBSERVED + 10 days);
        (router, _keys) = deployRouter(3, K);
        token = new FreezableToken();
        pool = new DroughtInsurancePool(router, token);
        router.scheduleConsumerApproval(address(pool));
        baseMonth = router.monthIndex(OBSERVED) - (MONTHS - 1);
        token.mint(address(pool), 50_000e6);
        pool.setDisputeTerms(100e6, 30e6, 2 hours);
    }

    function policyCount() external view returns (uint256) {
        return policyIds.length;
    }

    function watcherOf(uint256 seed) public pure returns (address) {
        return address(uint160(0xD15B0 + seed % 3));
    }

    modifier observed() {
        for (uint256 m = 0; m < MONTHS; ++m) {
            _frozenBefore[m] = pool.frozen(REGION, baseMonth + m);
            for (uint256 i = 0; i < policyIds.length; ++i) {
                _paidBefore[policyIds[i]][m] = pool.periodPaid(policyIds[i], baseMonth + m);
            }
        }
        _;
        for (uint256 m = 0; m < MONTHS; ++m) {
            if (!_frozenBefore[m] || !pool.frozen(REGION, baseMonth + m)) continue;
            for (uint256 i = 0; i < policyIds.length; ++i) {
                if (pool.periodPaid(policyIds[i], baseMonth + m) != _paidBefore[policyIds[i]][m]) ++paidWhileFrozen;
            }
        }
    }

    // ------------------------------------------------------------------ insurer

    function buy(uint256 termsSeed, uint256 windowSeed) external observed {
        if (policyIds.length >= MAX_POLICIES) return;
        int64 trigger = int64(int256(bound(termsSeed % 1e7, 0, 3_000_000)));
        DroughtInsurancePool.ProductTerms memory t = DroughtInsurancePool.ProductTerms({
            termsHash: keccak256(abi.encode("terms", termsSeed)),
            region: REGION,
            trigger: trigger,
            exit: trigger + 1_000_000,
            limit: uint128(bound(termsSeed / 1e7, 1e6, 1_000e6)),
            deductible: 0,
            coverageStart: OBSERVED - 200 days,
            coverageEnd: uint64(block.timestamp + 30 days),
            grace: 30 days,
            periodMonths: 1,
            premium: 0,
            rateBps: 0,
            loadingBps: 0
        });
        uint256 productId = pool.registerProduct(t);
        uint64[3] memory windows = [uint64(0), 1 hours, 1 days];
        pool.setLiveness(productId, windows[windowSeed % 3]);
        policyIds.push(pool.buyPolicy(productId, address(uint160(0x1A5000 + policyIds.length + 1))));
    }

    function terms(uint256 bond, uint256 reward) external observed {
        pool.setDisputeTerms(uint128(bound(bond, 0, 500e6)), uint128(bound(reward, 0, 100e6)), 2 hours);
    }

    // ------------------------------------------------------------------ network and anyone

    function report(uint256 monthSeed, uint256 revision, uint256 value) external observed {
        uint64 epoch = uint64((baseMonth + monthSeed % MONTHS) * 1000 + bound(revision, 0, 6));
        Report memory rep = droughtReport(REGION, int256(bound(value, 0, 5_000_000)), epoch);
        uint256[] memory signing = new uint256[](K);
        signing[0] = _keys[monthSeed % 3];
        signing[1] = _keys[(monthSeed % 3 + 1) % 3];
        try router.submit(rep, _sign(signing, router.reportDigest(rep))) {} catch {}
    }

    function _sign(uint256[] memory keys, bytes32 digest) internal pure returns (bytes memory) {
        return signSorted(keys, digest);
    }

    function settle(uint256 monthSeed, uint256 count) external observed {
        pool.settle(REGION, baseMonth + monthSeed % MONTHS, bound(count, 0, 8));
    }

    function claim(uint256 policySeed, uint256 monthSeed) external observed {
        if (policyIds.length == 0) return;
        pool.claim(policyIds[policySeed % policyIds.length], baseMonth + monthSeed % MONTHS);
    }

    function warp(uint256 secs) external observed {
        vm.warp(block.timestamp + bound(secs, 1, 1 days));
    }

    // ------------------------------------------------------------------ watchers

    /// @notice A watcher disputes the revision the pool holds for a month (or one it does not hold).
    function dispute(uint256 watcherSeed, uint256 monthSeed, bool wrongRevision) external observed {
        uint256 month = baseMonth + monthSeed % MONTHS;
        (bool known, uint256 revision,,,) = pool.observation(REGION, month);
        uint64 epoch = uint64(month * 1000 + revision + (wrongRevision ? 1 : 0));
        address watcher = watcherOf(watcherSeed);
        uint256 bond = pool.disputeBond();
        token.mint(watcher, bond);
        vm.prank(watcher);
        token.approve(address(pool), bond);
        bool fresh = pool.disputeOf(REGION, epoch).status == DroughtInsurancePool.DisputeStatus.None;
        vm.prank(watcher);
        try pool.dispute(REGION, epoch, "bafkreievidence") {
            if (!known || wrongRevision || !fresh || bond == 0) ++unexpected;
            disputed.push(epoch);
            bondsIn += bond;
            ghostOpen += bond;
        } catch {
            vm.prank(watcher);
            token.transfer(address(0xdead), bond);
        }
    }

    function resolve(uint256 disputeSeed) external observed {
        if (disputed.length == 0) return;
        uint64 epoch = disputed[disputeSeed % disputed.length];
        DroughtInsurancePool.Dispute memory d = pool.disputeOf(REGION, epoch);
        (, uint256 revision,,,) = pool.observation(REGION, epoch / 1000);
        bool replaced = revision > epoch % 1000;
        bool due = replaced || block.timestamp >= uint256(d.filedAt) + pool.disputeAnswerWindow();
        uint256 watcherBefore = token.balanceOf(d.watcher);
        uint256 expectedReward = pool.disputeReward();
        if (expectedReward > pool.freeCapital()) expectedReward = pool.freeCapital();
        try pool.resolveDispute(REGION, epoch) returns (bool wasUpheld) {
            if (settledOnce[epoch] || !due || wasUpheld != replaced) ++unexpected;
            settledOnce[epoch] = true;
            bondsOut += d.bond;
            ghostOpen -= d.bond;
            if (wasUpheld) {
                ++upheld;
                if (token.balanceOf(d.watcher) != watcherBefore + d.bond + expectedReward) ++unexpected;
            } else {
                ++rejected;
                if (token.balanceOf(d.watcher) != watcherBefore) ++unexpected;
            }
        } catch {
            if (!settledOnce[epoch] && due) ++unexpected;
        }
    }
}

/// @notice Dispute invariants of DroughtInsurancePool (foundry.toml: 50 runs × 200 calls each).
contract PoolDisputeInvariantsTest is Test {
    DisputeHandler internal handler;
    DroughtInsurancePool internal pool;
    FreezableToken internal token;

    function setUp() public {
        handler = new DisputeHandler();
        pool = handler.pool();
        token = handler.token();
        bytes4[] memory selectors = new bytes4[](12);
        selectors[0] = DisputeHandler.buy.selector;
        selectors[1] = DisputeHandler.terms.selector;
        selectors[2] = DisputeHandler.report.selector;
        selectors[3] = DisputeHandler.report.selector;
        selectors[4] = DisputeHandler.settle.selector;
        selectors[5] = DisputeHandler.claim.selector;
        selectors[6] = DisputeHandler.warp.selector;
        selectors[7] = DisputeHandler.dispute.selector;
        selectors[8] = DisputeHandler.dispute.selector;
        selectors[9] = DisputeHandler.resolve.selector;
        selectors[10] = DisputeHandler.resolve.selector;
        selectors[11] = DisputeHandler.buy.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// @notice A disputed report never pays while its dispute is open: no period of a month that was
    ///         frozen before and after a call grew during it; and every call went by the pool's rules.
    function invariant_frozenReportNeverPays() public view {
        assertEq(handler.paidWhileFrozen(), 0, "a frozen report paid");
        assertEq(handler.unexpected(), 0, "pool broke its dispute rules");
    }

    /// @notice Bonds are conserved: the vault holds exactly the open bonds (the pool's openBonds and the
    ///         ghost sum), and every bond taken in went out once (in = out + open).
    function invariant_bondsConserved() public view {
        uint256 open = handler.ghostOpen();
        assertEq(token.balanceOf(address(pool.bonds())), open, "vault balance == open bonds");
        assertEq(pool.openBonds(), open, "openBonds == open bonds");
        assertEq(handler.bondsIn(), handler.bondsOut() + open, "every bond goes out exactly once");
    }
}
