// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {DroughtInsurancePool} from "../src/DroughtInsurancePool.sol";
import {TestStablecoin} from "../src/TestStablecoin.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Fuzz tests of DroughtInsurancePool through a real OracleRouter: the payout rule, revisions
///         (top-up, never claw back, never twice), the capital rule, the grace period and seasonal grids.
contract PoolFuzzTest is Test, RouterFixture {
    uint64 internal constant OBSERVED = 1_700_000_000;
    bytes32 internal constant REGION = keccak256("region:fuzz");
    address internal constant INSURED = address(0x1A5);

    OracleRouter internal router;
    DroughtInsurancePool internal pool;
    TestStablecoin internal coin;
    uint256[] internal keys;
    uint256 internal month;

    function setUp() public {
        vm.warp(OBSERVED + 10 days);
        (router, keys) = deployRouter(3, 2);
        coin = new TestStablecoin();
        pool = new DroughtInsurancePool(router, coin);
        router.scheduleConsumerApproval(address(pool));
        month = router.monthIndex(OBSERVED);
    }

    function _product(int64 trigger, int64 exit, uint128 limit, uint128 deductible, uint8 periodMonths)
        internal
        returns (uint256)
    {
        return pool.registerProduct(
            DroughtInsurancePool.ProductTerms({
                termsHash: keccak256("fuzz terms"),
                region: REGION,
                trigger: trigger,
                exit: exit,
                limit: limit,
                deductible: deductible,
                coverageStart: OBSERVED - 200 days,
                coverageEnd: uint64(block.timestamp + 1 days),
                grace: 30 days,
                periodMonths: periodMonths,
                premium: 1,
                rateBps: 0,
                loadingBps: 0
            })
        );
    }

    function _buy(uint256 productId) internal returns (uint256) {
        coin.mint(address(this), 1);
        coin.approve(address(pool), 1);
        return pool.buyPolicy(productId, INSURED);
    }

    function _report(uint256 m, uint256 revision, int256 value) internal returns (bool) {
        Report memory rep = droughtReport(REGION, value, uint64(m * 1000 + revision));
        uint256[] memory signing = new uint256[](2);
        (signing[0], signing[1]) = (keys[0], keys[1]);
        try router.submit(rep, signSorted(signing, router.reportDigest(rep))) {
            return true;
        } catch {
            return false;
        }
    }

    function _entitled(int256 value, int64 trigger, int64 exit, uint128 limit, uint128 deductible)
        internal
        view
        returns (uint256)
    {
        uint256 gross = pool.payoutFor(value, trigger, exit, limit);
        return gross > deductible ? gross - deductible : 0;
    }

    /// @notice payoutFor is 0 at or below the trigger, the limit at or above the exit, monotone and
    ///         linear (floor) in between.
    function testFuzz_payoutRule(int64 trigger, uint64 width, uint128 limit, int256 a, int256 b) public view {
        width = uint64(bound(width, 1, uint64(type(int64).max)));
        vm.assume(int256(trigger) + int256(uint256(width)) <= type(int64).max);
        int64 exit = int64(int256(trigger) + int256(uint256(width)));
        a = int256(bound(uint256(a), 0, type(uint128).max)) - int256(uint256(type(uint64).max)) + trigger;
        b = int256(bound(uint256(b), 0, type(uint128).max)) - int256(uint256(type(uint64).max)) + trigger;
        if (a > b) (a, b) = (b, a);
        uint256 pa = pool.payoutFor(a, trigger, exit, limit);
        uint256 pb = pool.payoutFor(b, trigger, exit, limit);
        assertLe(pa, pb, "monotone in the value");
        assertLe(pb, limit, "at most the limit");
        if (a <= trigger) assertEq(pa, 0, "nothing at or below the trigger");
        if (b >= exit) assertEq(pb, limit, "the limit at or above the exit");
        if (a > trigger && a < exit) {
            assertEq(pa, (uint256(limit) * uint256(a - trigger)) / uint256(width), "linear, floored");
        }
    }

    /// @notice Any sequence of revisions of one month pays exactly the highest entitlement any of them
    ///         gave: top-ups for higher values, nothing clawed back for lower ones, never paid twice.
    function testFuzz_revisionsTopUpNeverClawBack(int64 trigger, uint64 width, uint128 limit, uint256[6] memory vals)
        public
    {
        trigger = int64(int256(bound(uint256(uint64(trigger)), 0, 3_000_000)));
        int64 exit = trigger + int64(int256(bound(width, 1, 3_000_000)));
        limit = uint128(bound(limit, 1, 1e15));
        uint128 deductible = uint128(bound(vals[5], 0, limit - 1));
        coin.mint(address(pool), limit);
        uint256 policyId = _buy(_product(trigger, exit, limit, deductible, 1));
        uint256 best = 0;
        for (uint256 i = 0; i < 5; ++i) {
            int256 value = int256(bound(vals[i], 0, 5_000_000));
            assertTrue(_report(month, i, value), "a higher revision is accepted");
            uint256 e = _entitled(value, trigger, exit, limit, deductible);
            if (e > best) best = e;
            assertEq(coin.balanceOf(INSURED), best, "paid the best entitlement so far, once");
            assertEq(pool.claim(policyId, month), 0, "nothing more to claim");
        }
        assertFalse(_report(month, 2, 5_000_000), "a lower revision is stale");
        assertEq(pool.totalExposure(), limit - best, "the unpaid limit stays reserved");
    }

    /// @notice A correction of an earlier month is accepted after a later month, and pays by its value.
    function testFuzz_lateCorrectionOfAnEarlierMonth(uint256 v0, uint256 v1, uint256 later) public {
        coin.mint(address(pool), 1_000e6);
        uint256 policyId = _buy(_product(2_000_000, 4_000_000, 1_000e6, 0, 1));
        int256 first = int256(bound(v0, 0, 5_000_000));
        int256 second = int256(bound(v1, 0, 5_000_000));
        uint256 m = month - 1 - bound(later, 0, 3);
        assertTrue(_report(m, 0, first), "first report of month m");
        assertTrue(_report(month, 0, 0), "a later month");
        assertTrue(_report(m, 1, second), "the correction of month m after it");
        uint256 e0 = pool.payoutFor(first, 2_000_000, 4_000_000, 1_000e6);
        uint256 e1 = pool.payoutFor(second, 2_000_000, 4_000_000, 1_000e6);
        assertEq(coin.balanceOf(INSURED), e0 > e1 ? e0 : e1, "max of the two, paid once");
        assertEq(pool.periodPaid(policyId, m), e0 > e1 ? e0 : e1, "period books");
        (uint64 latestEpoch,,,,) = router.latest(REGION);
        assertEq(uint256(latestEpoch), month * 1000, "latest unchanged by the correction");
    }

    /// @notice A policy is written iff free capital (premium included) covers its limit.
    function testFuzz_capitalRule(uint128 capital, uint128 limit, uint256 withdrawn) public {
        capital = uint128(bound(capital, 0, 1e15));
        limit = uint128(bound(limit, 1, 1e15));
        coin.mint(address(pool), capital);
        uint256 productId = _product(0, 1_000_000, limit, 0, 1);
        coin.mint(address(this), 1);
        coin.approve(address(pool), 1);
        bool covered = uint256(capital) + 1 >= limit;
        try pool.buyPolicy(productId, INSURED) {
            assertTrue(covered, "written only when covered");
        } catch (bytes memory err) {
            assertFalse(covered, "refused only when not covered");
            assertEq(bytes32(bytes4(err)), bytes32(DroughtInsurancePool.InsufficientCapital.selector), "why");
        }
        uint256 free = pool.freeCapital();
        withdrawn = bound(withdrawn, 0, uint256(capital) + 2);
        try pool.withdraw(address(0xCAFE), withdrawn) {
            assertLe(withdrawn, free, "withdrew only free capital");
        } catch {
            assertGt(withdrawn, free, "refused only above free capital");
        }
        assertGe(coin.balanceOf(address(pool)), pool.reserved(), "capital rule");
    }

    /// @notice closeExpired refuses until coverageEnd + grace has passed, at any time before it.
    function testFuzz_closeWaitsForGrace(uint256 wait) public {
        coin.mint(address(pool), 1_000e6);
        uint256 productId = _product(2_000_000, 4_000_000, 1_000e6, 0, 1);
        uint256 policyId = _buy(productId);
        DroughtInsurancePool.Product memory pr = pool.product(productId);
        uint256 closable = uint256(pr.coverageEnd) + pr.grace;
        uint256 t = bound(wait, block.timestamp, closable + 10 days);
        vm.warp(t);
        if (t <= closable) {
            vm.expectRevert(abi.encodeWithSelector(DroughtInsurancePool.NotClosable.selector, policyId, closable));
            pool.closeExpired(policyId);
        } else {
            pool.closeExpired(policyId);
            assertEq(pool.reserved(), 0, "reserve released");
        }
    }

    /// @notice A seasonal policy pays a season's worst month once, whatever order its months arrive in.
    function testFuzz_seasonPaysItsWorstMonthOnce(uint256[3] memory vals) public {
        coin.mint(address(pool), 1_000e6);
        uint256 policyId = _buy(_product(1_000_000, 4_000_000, 1_000e6, 0, 3));
        uint256 start = (month - 3) - (month - 3) % 3;
        uint256 best = 0;
        for (uint256 i = 0; i < 3; ++i) {
            int256 value = int256(bound(vals[i], 0, 5_000_000));
            assertTrue(_report(start + (i * 2) % 3, 0, value), "each month's first report");
            uint256 e = pool.payoutFor(value, 1_000_000, 4_000_000, 1_000e6);
            if (e > best) best = e;
        }
        assertEq(coin.balanceOf(INSURED), best, "the season's worst month, once");
        assertEq(pool.periodPaid(policyId, start / 3), best, "period books");
    }
}
