// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {DroughtInsurancePool} from "../src/DroughtInsurancePool.sol";
import {FreezableToken} from "../src/test/FreezableToken.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Drives a DroughtInsurancePool through a real OracleRouter: the insurer registers products and
///         policyholders buy them (monthly or seasonal grids, deductibles, graces), drought reports and
///         their revisions for four months of two regions arrive signed by k members (late corrections
///         included), anyone settles pages, claims periods and owed payouts, insureds are frozen and
///         unfrozen (their payouts then fail and become owed), the insurer funds, withdraws and closes,
///         the router's owner removes the pool and anyone resubscribes or syncs it, and time moves on.
///         Every value the pool recorded is kept, so the invariants can bound what each period may pay.
contract PoolHandler is RouterFixture {
    uint256 internal constant MAX_POLICIES = 16;
    uint256 public constant MONTHS = 4;
    uint8 internal constant K = 2;
    uint64 internal constant OBSERVED = 1_700_000_000;

    OracleRouter public router;
    DroughtInsurancePool public pool;
    FreezableToken public token;
    uint256[] internal _keys;
    bytes32[2] public regions;
    /// @notice The first of the MONTHS months reports are about (month indices, as epochs carry them).
    uint256 public baseMonth;

    uint256[] public policyIds;
    /// @dev region index => month offset => every value the pool recorded (any revision).
    mapping(uint256 => mapping(uint256 => int256[])) internal _recorded;
    mapping(uint256 => uint256) public regionIndexOf;
    /// @notice Calls whose outcome the pool's rules do not allow (must stay 0).
    uint256 public unexpected;

    constructor() {
        vm.warp(OBSERVED + 10 days);
        (router, _keys) = deployRouter(3, K);
        token = new FreezableToken();
        pool = new DroughtInsurancePool(router, token);
        router.scheduleConsumerApproval(address(pool)); // the timelock is unarmed: approved at once
        regions[0] = keccak256("region:forge-a");
        regions[1] = keccak256("region:forge-b");
        baseMonth = router.monthIndex(OBSERVED) - (MONTHS - 1);
        token.mint(address(pool), 5_000e6);
    }

    function policyCount() external view returns (uint256) {
        return policyIds.length;
    }

    function recorded(uint256 r, uint256 offset) external view returns (int256[] memory) {
        return _recorded[r][offset];
    }

    function insuredOf(uint256 policyId) public pure returns (address) {
        return address(uint160(0x1A5000 + policyId));
    }

    // ------------------------------------------------------------------ insurer and policyholders

    function buy(uint256 regionSeed, uint256 termsSeed, uint256 limit, uint256 rate, uint256 ttl) external {
        if (policyIds.length >= MAX_POLICIES) return;
        uint256 r = regionSeed % 2;
        int64 trigger = int64(int256(bound(termsSeed % 1e7, 0, 3_000_000)));
        int64 exit = trigger + int64(int256(bound(termsSeed / 1e7 % 1e7, 1, 2_000_000)));
        uint128 lim = uint128(bound(limit, 1e6, 2_000e6));
        DroughtInsurancePool.ProductTerms memory t = DroughtInsurancePool.ProductTerms({
            termsHash: keccak256(abi.encode("terms", termsSeed)),
            region: regions[r],
            trigger: trigger,
            exit: exit,
            limit: lim,
            deductible: uint128(bound(termsSeed / 1e14 % 1e9, 0, lim / 4)),
            coverageStart: OBSERVED - 200 days,
            coverageEnd: uint64(block.timestamp + bound(ttl, 1 days, 60 days)),
            grace: uint64(bound(ttl / 1e7, 0, 30 days)),
            periodMonths: termsSeed % 3 == 0 ? 3 : 1,
            premium: 0,
            rateBps: uint32(bound(rate, 0, 2_000)),
            loadingBps: uint32(bound(rate / 1e4, 0, 5_000))
        });
        uint256 productId = pool.registerProduct(t);
        uint256 premium = pool.product(productId).premium;
        address buyer = address(0xB0B);
        token.mint(buyer, premium);
        vm.prank(buyer);
        token.approve(address(pool), premium);
        bool covered = token.balanceOf(address(pool)) + premium >= pool.reserved() + lim;
        uint256 next = pool.policyCount() + 1;
        vm.prank(buyer);
        try pool.buyPolicy(productId, insuredOf(next)) returns (uint256 id) {
            if (!covered || id != next) ++unexpected;
            policyIds.push(id);
            regionIndexOf[id] = r;
        } catch (bytes memory err) {
            // Refused only for want of capital.
            if (covered || bytes4(err) != DroughtInsurancePool.InsufficientCapital.selector) ++unexpected;
            vm.prank(buyer);
            token.transfer(address(0xdead), premium);
        }
    }

    function fund(uint256 amount) external {
        token.mint(address(pool), bound(amount, 0, 1_000e6));
    }

    function withdraw(uint256 amount) external {
        uint256 free = pool.freeCapital();
        amount = bound(amount, 0, free + free / 4 + 1);
        try pool.withdraw(address(0xCAFE), amount) {
            if (amount > free) ++unexpected;
        } catch {
            if (amount <= free) ++unexpected;
        }
    }

    function close(uint256 policySeed) external {
        if (policyIds.length == 0) return;
        uint256 id = policyIds[policySeed % policyIds.length];
        DroughtInsurancePool.Product memory pr = pool.product(pool.policy(id).productId);
        bool closable = pool.policy(id).status == DroughtInsurancePool.Status.Active
            && block.timestamp > uint256(pr.coverageEnd) + pr.grace;
        try pool.closeExpired(id) {
            if (!closable) ++unexpected;
        } catch {
            if (closable) ++unexpected;
        }
    }

    // ------------------------------------------------------------------ reports and settlement

    /// @notice A signed drought report for one of the months (any revision: late corrections, stale ones).
    function report(uint256 regionSeed, uint256 monthSeed, uint256 revision, uint256 value) external {
        uint256 r = regionSeed % 2;
        uint256 offset = monthSeed % MONTHS;
        uint64 epoch = uint64((baseMonth + offset) * 1000 + bound(revision, 0, 6));
        Report memory rep = droughtReport(regions[r], int256(bound(value, 0, 5_000_000)), epoch);
        uint256[] memory signing = new uint256[](K);
        signing[0] = _keys[monthSeed % 3];
        signing[1] = _keys[(monthSeed % 3 + 1) % 3];
        bytes memory sigs = signSorted(signing, router.reportDigest(rep));
        (, uint256 before,,,) = pool.observation(regions[r], baseMonth + offset);
        (bool knownBefore,,,,) = pool.observation(regions[r], baseMonth + offset);
        try router.submit(rep, sigs) {} catch {}
        _noteRecorded(r, offset, knownBefore, before);
    }

    function sync(uint256 regionSeed) external {
        uint256 r = regionSeed % 2;
        (uint64 epoch,,,,) = router.latest(regions[r]);
        uint256 offset = epoch / 1000 >= baseMonth ? epoch / 1000 - baseMonth : MONTHS;
        if (epoch == 0 || offset >= MONTHS) {
            pool.sync(regions[r]);
            return;
        }
        (bool knownBefore, uint256 before,,,) = pool.observation(regions[r], baseMonth + offset);
        pool.sync(regions[r]);
        _noteRecorded(r, offset, knownBefore, before);
    }

    function _noteRecorded(uint256 r, uint256 offset, bool knownBefore, uint256 before) internal {
        (bool known, uint256 revision, int256 value,,) = pool.observation(regions[r], baseMonth + offset);
        if (known && (!knownBefore || revision != before)) {
            if (knownBefore && revision < before) ++unexpected; // a lower revision replaced a higher one
            _recorded[r][offset].push(value);
        }
    }

    function settle(uint256 regionSeed, uint256 monthSeed, uint256 count) external {
        pool.settle(regions[regionSeed % 2], baseMonth + monthSeed % MONTHS, bound(count, 0, 8));
    }

    function claim(uint256 policySeed, uint256 monthSeed) external {
        if (policyIds.length == 0) return;
        pool.claim(policyIds[policySeed % policyIds.length], baseMonth + monthSeed % MONTHS);
    }

    function claimOwed(uint256 policySeed) external {
        if (policyIds.length == 0) return;
        uint256 id = policyIds[policySeed % policyIds.length];
        uint256 owed = pool.policy(id).owed;
        bool frozen = token.frozen(insuredOf(id));
        try pool.claimOwed(id) {
            if (owed == 0 || frozen) ++unexpected;
        } catch {
            if (owed != 0 && !frozen) ++unexpected; // an owed payout is always there to pay
        }
    }

    function freeze(uint256 policySeed, bool frozen) external {
        if (policyIds.length == 0) return;
        token.setFrozen(insuredOf(policyIds[policySeed % policyIds.length]), frozen);
    }

    /// @notice The router's owner removes the pool from a region; anyone may resubscribe it.
    function unsubscribe(uint256 regionSeed, bool andBack) external {
        bytes32 region = regions[regionSeed % 2];
        try router.removeSubscriber(region, address(pool)) {} catch {}
        if (andBack && pool.subscribedRegion(region)) pool.resubscribe(region);
    }

    function warp(uint256 secs) external {
        vm.warp(block.timestamp + bound(secs, 1, 20 days));
    }
}

/// @notice Invariants of DroughtInsurancePool (foundry.toml: 50 runs × 200 calls = 10,000 calls each).
contract PoolInvariantsTest is Test {
    PoolHandler internal handler;
    DroughtInsurancePool internal pool;
    FreezableToken internal token;

    function setUp() public {
        handler = new PoolHandler();
        pool = handler.pool();
        token = handler.token();
        bytes4[] memory selectors = new bytes4[](13);
        selectors[0] = PoolHandler.buy.selector;
        selectors[1] = PoolHandler.fund.selector;
        selectors[2] = PoolHandler.withdraw.selector;
        selectors[3] = PoolHandler.close.selector;
        selectors[4] = PoolHandler.report.selector;
        selectors[5] = PoolHandler.sync.selector;
        selectors[6] = PoolHandler.settle.selector;
        selectors[7] = PoolHandler.claim.selector;
        selectors[8] = PoolHandler.claimOwed.selector;
        selectors[9] = PoolHandler.freeze.selector;
        selectors[10] = PoolHandler.unsubscribe.selector;
        selectors[11] = PoolHandler.warp.selector;
        selectors[12] = PoolHandler.report.selector; // reports twice as likely
        targetContract(address(handler));
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// @notice A policy is never paid twice for one period: what each period settled is at most the best
    ///         entitlement any value recorded for its months gave, the periods add up to the policy's
    ///         paid total (never above its limit), and the insured received exactly paid − owed.
    function invariant_neverPaidTwiceForOnePeriod() public view {
        assertEq(handler.unexpected(), 0, "pool broke its rules");
        uint256 n = handler.policyCount();
        uint256 base = handler.baseMonth();
        for (uint256 i = 0; i < n; ++i) {
            uint256 id = handler.policyIds(i);
            DroughtInsurancePool.Policy memory p = pool.policy(id);
            DroughtInsurancePool.Product memory pr = pool.product(p.productId);
            uint256 pm = pr.periodMonths;
            uint256 sum = 0;
            for (uint256 g = base / pm; g <= (base + handler.MONTHS() - 1) / pm; ++g) {
                uint256 settled = pool.periodPaid(id, g);
                uint256 best = 0;
                for (uint256 m = g * pm; m < (g + 1) * pm; ++m) {
                    if (m < base || m >= base + handler.MONTHS()) continue;
                    int256[] memory values = handler.recorded(handler.regionIndexOf(id), m - base);
                    for (uint256 v = 0; v < values.length; ++v) {
                        uint256 gross = pool.payoutFor(values[v], pr.trigger, pr.exit, pr.limit);
                        uint256 e = gross > pr.deductible ? gross - pr.deductible : 0;
                        if (e > best) best = e;
                    }
                }
                assertLe(settled, best, "a period paid more than its best entitlement");
                sum += settled;
            }
            assertEq(sum, p.paid, "periods add up to the policy's paid total");
            assertLe(p.paid, pr.limit, "paid within the limit");
            assertEq(token.balanceOf(handler.insuredOf(id)) + p.owed, p.paid, "insured got paid - owed");
        }
    }

    /// @notice The pool's balance covers the owed payouts it reserved, and totalOwed is their sum.
    function invariant_balanceCoversOwed() public view {
        uint256 n = handler.policyCount();
        uint256 owed = 0;
        for (uint256 i = 0; i < n; ++i) {
            owed += pool.policy(handler.policyIds(i)).owed;
        }
        assertEq(pool.totalOwed(), owed, "totalOwed is the sum of owed payouts");
        assertGe(token.balanceOf(address(pool)), owed, "balance covers owed payouts");
    }

    /// @notice The capital rule holds after every call: balance ≥ Σ open policies' unpaid limits + owed,
    ///         and totalExposure is exactly that sum.
    function invariant_capitalRuleHolds() public view {
        uint256 n = handler.policyCount();
        uint256 exposure = 0;
        for (uint256 i = 0; i < n; ++i) {
            DroughtInsurancePool.Policy memory p = pool.policy(handler.policyIds(i));
            if (p.status == DroughtInsurancePool.Status.Active) {
                exposure += pool.product(p.productId).limit - p.paid;
            }
        }
        assertEq(pool.totalExposure(), exposure, "exposure is the open policies' unpaid limits");
        assertGe(token.balanceOf(address(pool)), exposure + pool.totalOwed(), "capital rule");
        assertEq(pool.reserved(), exposure + pool.totalOwed(), "reserved = exposure + owed");
    }
}
